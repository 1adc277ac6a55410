"""`make class` runs this first: a class server without a teacher password would make every
browser the teacher, so it refuses to start and says how to set one (exit 1)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fmnist_core import roles  # noqa: E402

if roles.teacher_password() is None:
    print("make class needs a teacher password: without one every browser would be the teacher.\n"
          "Set one, then run make class again:\n"
          "    export FMNIST_TEACHER_PASSWORD='something long'\n"
          f"or put teacher_password = \"something long\" in {roles.SECRETS_FILE} (git ignores that file).",
          file=sys.stderr)
    sys.exit(1)
if len(roles.teacher_password()) < 8:
    print("the teacher password is shorter than 8 characters: pick a longer one "
          "(FMNIST_TEACHER_PASSWORD or teacher_password in .streamlit/secrets.toml).", file=sys.stderr)
    sys.exit(1)
