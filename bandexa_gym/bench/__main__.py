"""``python -m bandexa_gym.bench``: the ``bandexa-bench`` command."""

import sys

if __name__ == "__main__":
    # Run the package's main, not a __main__ copy, so that the classes and the job function
    # that worker processes unpickle are bandexa_gym.bench's own.
    from bandexa_gym.bench import main

    sys.exit(main())
