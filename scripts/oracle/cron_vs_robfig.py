"""Differential check: sidecar.rules.cron vs robfig/cron v3.0.1 (Go oracle)."""
import os, random, subprocess, sys
from datetime import datetime, UTC
from sidecar.rules.cron import parse_cron, CronError
ORACLE = os.environ.get("ORACLE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "oracle"))

rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
ATOMS = {0: ["*", "?", "0", "5", "30", "59", "60", "*/15", "10-20", "10-20/5", "5/20", "*/1", "*/0", "x", "1-2-3", "1/2/3", "20-10", "-1", "+5", "07", ""],
         1: ["*", "0", "30", "*/7", "0-59/30", "59", "60", "?"],
         2: ["*", "0", "3", "23", "24", "*/6", "9-17", "22-2", "?", "*-5"],
         3: ["*", "?", "1", "15", "31", "29", "30", "0", "32", "*/2", "1-31", "*/1", "1,15", "L", "5/10", "1-7"],
         4: ["*", "1", "2", "12", "13", "jan", "FEB", "mar-may", "*/3", "0", "feb,aug", "?", "dec-jan"],
         5: ["*", "?", "0", "1-5", "mon-fri", "SUN", "sat", "7", "*/2", "1/2", "0,6", "MON#1", "3-1", "*/1", "thu"]}
VALID = {0: ["*", "0", "0", "0", "5", "30", "*/15", "10-20/5", "5/20", "?"],
         1: ["*", "0", "30", "*/7", "0-59/30", "59", "*/1", "15,45"],
         2: ["*", "0", "3", "23", "*/6", "9-17", "?", "*-5", "1-23/2"],
         3: ["*", "*", "?", "1", "15", "31", "29", "30", "*/2", "1-31", "*/1", "1,15", "5/10", "1-7", "31,30"],
         4: ["*", "*", "1", "2", "12", "jan", "FEB", "mar-may", "*/3", "feb,aug", "?", "2/2"],
         5: ["*", "*", "?", "0", "1-5", "mon-fri", "SUN", "sat", "*/2", "1/2", "0,6", "*/1", "thu", "5"]}
MODE = sys.argv[3] if len(sys.argv) > 3 else "mixed"
def field(i):
    k = rng.choice([1, 1, 1, 2])
    pool = VALID[i] if MODE == "valid" or rng.random() < 0.85 else ATOMS[i]
    return ",".join(rng.choice(pool) for _ in range(k)).strip(",") or "*"
lines, cases = [], []
for _ in range(N):
    spec = " ".join(field(i) for i in range(6))
    r = rng.random()
    if r < 0.02: spec = spec.rsplit(" ", 1)[0]
    elif r < 0.03: spec = "@daily"
    elif r < 0.04: spec = "  " + spec.replace(" ", "   ")
    t = rng.randint(946684800, 4102444800)
    cases.append((spec, t)); lines.append(f"cron\t{spec}\t{t}")
out = subprocess.run([ORACLE], input="\n".join(lines) + "\n", capture_output=True, text=True).stdout.splitlines()
bad = 0; counts = {"ok": 0, "err": 0, "never": 0}
for (spec, t), answer in zip(cases, out, strict=True):
    kind, _, value = answer.partition("\t")
    counts[kind] += 1
    try:
        got = parse_cron(spec)
    except CronError as exc:
        mine = ("err", str(exc))
    else:
        n = got.next_after(datetime.fromtimestamp(t, UTC))
        mine = ("never", "") if n is None else ("ok", str(int(n.timestamp())))
    if mine != (kind, value):
        bad += 1
        if bad <= 15: print("MISMATCH", repr(spec), t, "go:", answer, "py:", mine)
print(f"{N} cases, go outcomes {counts}, mismatches {bad}")
