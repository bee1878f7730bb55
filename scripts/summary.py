"""Closing summary of `make test`: the runners' own closing lines, then one total."""
import glob
import os
import re
import sys

MATRIX = re.compile(r"^(matrix\[[^\]]+\]): (\d+) passed, (\d+) failed, (\d+) skipped\s*$")
# other runners' closing lines: "<name>: N passed, F failed[, S skipped]"
PLAIN = re.compile(r"^([\w.-]+(?:\[[^\]]+\])?): (\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$")
CTEST = re.compile(r"^\d+% tests passed, (\d+) tests? failed out of (\d+)")
PYTEST = re.compile(r"^=+ (.*) in [\d.]+s.* =+$")
# each fuzz harness' closing line: "fuzz[<family>]: N execs, K findings (...)"; 0 findings
# is one pass, any finding one failure
FUZZ = re.compile(r"^(fuzz\[[^\]]+\]): (\d+) execs, (\d+) findings")


def main(logdir: str) -> int:
    passed = failed = skipped = 0
    lines = []
    for path in sorted(glob.glob(os.path.join(logdir, "*.log"))):
        name = os.path.basename(path)[:-4]
        with open(path, errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                m = MATRIX.match(line)
                if m:
                    lines.append(line)
                    passed += int(m.group(2))
                    failed += int(m.group(3))
                    skipped += int(m.group(4))
                    continue
                m = PLAIN.match(line)
                if m and not line.startswith("total:"):
                    lines.append(line)
                    passed += int(m.group(2))
                    failed += int(m.group(3))
                    skipped += int(m.group(4) or 0)
                    continue
                m = FUZZ.match(line)
                if m:
                    lines.append(line)
                    bad = int(m.group(3)) > 0
                    passed += 0 if bad else 1
                    failed += 1 if bad else 0
                    continue
                m = CTEST.match(line)
                if m:
                    bad, total = int(m.group(1)), int(m.group(2))
                    lines.append("%s (ctest): %d passed, %d failed" % (name, total - bad, bad))
                    passed += total - bad
                    failed += bad
                    continue
                m = PYTEST.match(line)
                if m:
                    counts = dict((k, int(v)) for v, k in re.findall(r"(\d+) (\w+)", m.group(1)))
                    p, f_ = counts.get("passed", 0), counts.get("failed", 0) + counts.get("errors", 0) + counts.get("error", 0)
                    s = counts.get("skipped", 0)
                    lines.append("%s (pytest): %d passed, %d failed, %d skipped" % (name, p, f_, s))
                    passed += p
                    failed += f_
                    skipped += s
    for line in lines:
        print(line)
    print("total: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed or not lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
