"""prompt_transfer_jax: soft-prompt transfer on frozen T5 / RoBERTa in JAX/Flax."""
import setuptools

setuptools.setup(
    name='prompt_transfer_jax',
    version='0.1.0',
    description='On Transferability of Prompt Tuning for NLP (Su et al., 2022) in JAX/Flax',
    packages=setuptools.find_packages(include=['prompt_transfer_jax', 'prompt_transfer_jax.*']),
    python_requires='>=3.10',
    install_requires=[
        'jax', 'flax', 'optax', 'orbax-checkpoint', 'tensorstore', 'gin-config', 'absl-py',
        'seqio', 'tensorflow', 'tensorflow-text', 'tensorflow-datasets', 'sentencepiece',
        'safetensors', 'msgpack', 'numpy', 'scipy', 'matplotlib', 'rouge-score', 'tqdm',
        'clu', 'tensorboard', 'zstandard',
    ],
    extras_require={'test': ['pytest', 'pytest-xdist', 'torch', 'transformers', 'peft'],
                    # `ptj data prepare`: TFDS builders need importlib_resources; `datasets` is
                    # the Hugging Face fallback.
                    'data': ['importlib_resources', 'datasets']},
    entry_points={'console_scripts': ['ptj=prompt_transfer_jax.cli:main']},
)
