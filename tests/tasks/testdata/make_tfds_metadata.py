"""Regenerates the TFDS split metadata under testdata/tfds (run from the repo root:
`.venv/bin/python tests/tasks/testdata/make_tfds_metadata.py`).

The tfds wheel ships no split metadata, so `tfds.testing.mock_data` would mock datasets with no
splits and seqio would fail; these tiny `dataset_info.json` / `features.json` files declare the real
split names with `SPLIT_SIZE` examples each, for `mock_data(policy=USE_FILES, data_dir=...)`.
"""
import os
import pathlib
import shutil

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import tensorflow_datasets as tfds  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / 'tfds'
SPLIT_SIZE = 20
DATASETS = {
    'glue/sst2:2.0.0': ['train', 'validation', 'test'],
    'glue/mnli:2.0.0': ['train', 'validation_matched', 'validation_mismatched', 'test_matched',
                        'test_mismatched'],
    'glue/qnli:2.0.0': ['train', 'validation', 'test'],
    'glue/qqp:2.0.0': ['train', 'validation', 'test'],
    'glue/mrpc:2.0.0': ['train', 'validation', 'test'],
    'imdb_reviews/plain_text:1.0.0': ['train', 'test', 'unsupervised'],
    'snli:1.1.0': ['train', 'validation', 'test'],
    'squad/v1.1:3.0.0': ['train', 'validation'],
    'natural_questions_open:1.0.0': ['train', 'validation'],
    'multi_news:2.1.0': ['train', 'validation', 'test'],
    'samsum:1.0.0': ['train', 'validation', 'test'],
    'movie_rationales:0.1.0': ['train', 'validation', 'test'],
}


def main() -> None:
  shutil.rmtree(OUT, ignore_errors=True)
  for name, splits in DATASETS.items():
    builder = tfds.builder(name, data_dir=str(OUT))
    builder.info.set_splits(tfds.core.SplitDict(
        [tfds.core.SplitInfo(name=s, shard_lengths=[SPLIT_SIZE], num_bytes=0) for s in splits]))
    pathlib.Path(builder.data_dir).mkdir(parents=True, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
    print(builder.data_dir)


if __name__ == '__main__':
  main()
