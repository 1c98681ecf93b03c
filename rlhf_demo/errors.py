"""The project's error types: what the `rlhf-demo` command line shows as one line, without a traceback.

Raise `UserInputError` (or `MissingInputError` for something that does not exist) for anything the user can fix:
a bad option, a missing or malformed file, a model of the wrong kind. The message names the input and says what
to change. Any other exception is a bug and keeps its traceback. Both subclass the built-in types that callers of
the library already catch (`ValueError`, `FileNotFoundError`).
"""

from __future__ import annotations


class UserInputError(ValueError):
    """A user error: a bad option, file or model. The message is one line naming the input and the fix."""


class MissingInputError(UserInputError, FileNotFoundError):
    """A user error about something that does not exist (a model folder, a data file, a checkpoint)."""


class TrainingDivergedError(UserInputError):
    """A run that turned degenerate (a NaN or infinite reward, advantage, value loss or gradient): training stops
    before saving anything of that step, so the last checkpoint stays intact. The message names the quantity, the
    step, and the settings that tame it (reward scale, --reward_clip, --normalize_reward, --learning_rate)."""

    @classmethod
    def at_step(cls, step: int, what: str, detail: str, checkpoints_dir: str) -> TrainingDivergedError:
        """The error that stops PPO step `step` because `what` turned NaN or infinite (`detail`: the numbers that
        say why), before anything of the step is saved, so the checkpoints in `checkpoints_dir` are intact."""
        return cls(f"PPO step {step}: {what} turned NaN or infinite ({detail}). The run stopped before saving anything "
                   f"of this step, so the checkpoints in {checkpoints_dir} are intact. Scale the reward down, or set "
                   "--reward_clip or --normalize_reward, or lower --learning_rate.")


def one_line(error: BaseException) -> str:
    """The message of `error` as one line (the lines of a multi-line message joined by spaces), for the CLI."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())
