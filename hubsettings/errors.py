"""The one error type the settings raise; its message is a single line fit to print as is."""


class SettingsError(ValueError):
    """Settings that cannot be used. The message names the setting and never contains a key."""
