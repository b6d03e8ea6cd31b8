import sys
from pathlib import Path

# Test helper modules (the core simulation) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
