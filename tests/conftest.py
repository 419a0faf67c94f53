import sys
from pathlib import Path

# The helpers beside the tests (authors_fixture.py) import by name.
sys.path.insert(0, str(Path(__file__).parent))
