"""The project's own error type: anything a user can cause ends as one clear line."""


class XrdsymError(Exception):
    """A failure caused by input, params or environment, reported as one line (no traceback)."""


class ParamsError(XrdsymError):
    """An invalid value in params.yaml; the message names the key and the value."""
