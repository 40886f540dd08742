"""Exceptions the CLI turns into an exit code: a user mistake is printed as one sentence (exit 2)."""


class UserError(Exception):
    """Bad input from the user (file, flag or value). The message names the culprit in one sentence."""


class NonFiniteLoss(UserError):
    """A training loss became non-finite at `step` (found at a later host read: `step` says where it happened)."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class RanksFailed(Exception):
    """A --processes rank exited non-zero after reporting its own error: the CLI exits with `code`, adding nothing."""

    def __init__(self, code: int) -> None:
        super().__init__(f"a training rank exited with code {code}")
        self.code = code
