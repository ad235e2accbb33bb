"""The error every method raises for a wrong name, option or value (a leaf: the registry and the
method modules both raise it)."""


class MethodConfigError(ValueError):
    """A method was given an unknown name, an unknown key or an impossible value."""
