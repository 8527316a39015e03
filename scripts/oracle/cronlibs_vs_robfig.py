"""How cronsim and croniter read Harbor's 6-field cron, against robfig/cron v3.0.1."""
import os, random, subprocess
from datetime import datetime, UTC
import cronsim, croniter
ORACLE = os.environ.get("ORACLE", os.path.join(os.path.dirname(os.path.abspath(__file__)), "oracle"))
rng = random.Random(7)
VALID = {0: ["0"], 1: ["*", "0", "30", "*/7", "0-59/30", "15,45"],
         2: ["*", "0", "3", "23", "*/6", "9-17", "?"],
         3: ["*", "*", "?", "1", "15", "31", "29", "*/2", "1-31", "*/1", "1,15", "5/10"],
         4: ["*", "*", "1", "2", "jan", "FEB", "mar-may", "*/3", "?"],
         5: ["*", "*", "?", "0", "1-5", "mon-fri", "SUN", "*/2", "1/2", "0,6", "*/1"]}
cases = []
for _ in range(5000):
    spec = " ".join(rng.choice(VALID[i]) for i in range(6))
    cases.append((spec, rng.randint(946684800, 4102444800)))
out = subprocess.run([ORACLE], input="".join(f"cron\t{s}\t{t}\n" for s, t in cases), capture_output=True, text=True).stdout.splitlines()
def via_cronsim(spec, t):
    return int(next(cronsim.CronSim(spec, datetime.fromtimestamp(t, UTC))).timestamp())
def via_croniter(spec, t):
    return int(croniter.croniter(spec, datetime.fromtimestamp(t, UTC), second_at_beginning=True).get_next(datetime).timestamp())
for name, fn in (("cronsim", via_cronsim), ("croniter", via_croniter)):
    bad = err = 0; example = None; diff_example = None
    for (spec, t), answer in zip(cases, out):
        kind, _, value = answer.partition("\t")
        if kind != "ok": continue
        try: got = str(fn(spec, t))
        except Exception as exc:
            err += 1; example = example or (spec, repr(exc)); continue
        if got != value:
            bad += 1; diff_example = (spec, t, "robfig", value, name, got) if bad == 1 else diff_example
    print(f"{name}: {bad} different next times, {err} refused, of {len(cases)}; refused e.g. {example}; differing e.g. {diff_example}")
for spec in ["0 0 0 * * 7", "0 0 0 L * *", "0 0 0 * * MON#1", "0 0 0 1W * *", "@daily", "0 0 0 * *"]:
    res = []
    for name, fn in (("cronsim", via_cronsim), ("croniter", via_croniter)):
        try: fn(spec, 1787281200); res.append(f"{name} accepts")
        except Exception: res.append(f"{name} refuses")
    print(repr(spec), "(robfig refuses)" , ", ".join(res))
