"""A container healthcheck: GET a health URL, exit 0 on 200 and 1 otherwise (stdlib only).

    python deploy/healthcheck.py http://127.0.0.1:8000/readyz?check=database

Prints the answer (the readiness report) or the reason it failed, on one line.
"""

import sys
import urllib.error
import urllib.request


def main(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            print(response.read(2000).decode(errors="replace"))
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"{exc.code}: {exc.read(2000).decode(errors='replace')}")
        return 1
    except OSError as exc:
        print(f"unreachable: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/healthz"))
