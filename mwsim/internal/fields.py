"""Field types shared by the scenario schema and the event schemas (pydantic)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

NAME_CHARS = "letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64"


def check_name(value: str) -> str:
    """A worker, host, world or scenario name: short, ASCII, no spaces."""
    ok = (
        0 < len(value) <= 64
        and value[0].isascii()
        and value[0].isalnum()
        and all(c.isascii() and (c.isalnum() or c in "_.-") for c in value)
    )
    if not ok:
        raise ValueError(f"{value!r} is not a valid name ({NAME_CHARS})")
    return value


Name = Annotated[str, AfterValidator(check_name)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Duration = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=100_000)]
GpuIndex = Annotated[int, Field(ge=0)]


class Strict(BaseModel):
    """Unknown keys are errors, types are not coerced, instances are immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
