"""The one exception type for mistakes a user can make (bad value, file or database).

The CLI turns it into one line on stderr and exit code 2; library code raises it with a
message that says what is wrong and what to do about it.
"""


class UserError(ValueError):
    """Bad input from the user: printed as one line, exit code 2."""
