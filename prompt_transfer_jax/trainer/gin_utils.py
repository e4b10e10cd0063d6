"""Small gin helpers shared by the trainer's configurables."""
from __future__ import annotations

import gin


def require(**values) -> None:
  """One-line error for gin macros left at `%gin.REQUIRED` (gin does not check macro chains)."""
  for name, value in values.items():
    if value is gin.REQUIRED:
      raise ValueError(f'missing required gin macro {name}; set it with --gin.{name}=... '
                       "(strings need inner quotes: --gin.NAME=\"'value'\")")
