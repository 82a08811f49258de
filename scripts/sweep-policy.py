#!/usr/bin/env python3
"""Sweeps lagrate's policy over load shapes it was not tuned on and prints
the worst case against ideal-reactive, and any KEDA variant that beats it on
both pod-seconds and p99 wait.

Classes: steps, periodic bursts with short and long idle gaps, ramps, a
hot partition (steady, and falling after a peak), a scaler restart with and
without a member count (two partition counts and rates each) and an hour of
noise at a partition boundary (four seeds, two partition counts, started at
the right size and at a third of it, with and without a member count); each
at five phases of the sampling and HPA sync grid (a prefix of 1/4/7/10/13
s), eager and cooperative.

    cargo build --release --bins && python3 scripts/sweep-policy.py
"""
import json, os, shutil, subprocess, tempfile
from concurrent.futures import ThreadPoolExecutor
ROOT=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B=os.environ.get("LAGRATE_BIN", os.path.join(ROOT,"target","release","lagrate"))
DIR=tempfile.mkdtemp(prefix="lagrate-sweep-")
def seg(r,s): return "  - { rate: %g, seconds: %g }\n" % (r,s)
def ramp(a,b,s): return "  - { ramp: [%g, %g], seconds: %g }\n" % (a,b,s)
classes={}
for P,r in [(24,300),(48,600)]:
    classes[f"steps-P{P}-r{r}"]=(P,"",[(r,600),(8*r,900),(2*r,900),(r,600)])
    classes[f"bursts-P{P}-r{r}"]=(P,"",[(0,120),(5*r,60),(0,240),(5*r,60),(0,240),(5*r,60),(0,300)])
    classes[f"bursts-long-P{P}-r{r}"]=(P,"",[(0,120),(5*r,60),(0,900),(5*r,60),(0,900),(5*r,60),(0,900)])
    classes[f"hot-falls-P{P}-r{r}"]=(P,"hotPartitionShare: 0.15\n",[(r,300),(4*r,600),(r,1800)])
    classes[f"restart-nomembers-P{P}-r{r}"]=(P,"scalerRestarts: [1230]\nmembersReported: false\n",[(r,300),(6*r,900),(2*r,1200)])
    classes[f"ramp-P{P}-r{r}"]=(P,"",[("ramp",r,10*r,900),(10*r,600),("ramp",10*r,r,600)])
    classes[f"hot-P{P}-r{r}"]=(P,"hotPartitionShare: 0.15\n",[(r,300),(4*r,1200),(r,600)])
    classes[f"restart-P{P}-r{r}"]=(P,"scalerRestarts: [900]\n",[(r,300),(6*r,900),(2*r,900)])
for seed in (1,2,3,42):
    # Steady noisy load at a partition boundary (12 pods of 2 partitions
    # serve 1000 msg/s with nothing to spare at 20 % headroom), started at
    # the right size and at a third of it, for an hour.
    for P,r,n in [(24,1000,12),(48,2000,24)]:
        classes[f"noise-right-P{P}-s{seed}"]=(P,f"noise: 0.2\nseed: {seed}\ninitialReplicas: {n}\n",[(r,3600)])
        classes[f"noise-wrong-P{P}-s{seed}"]=(P,f"noise: 0.2\nseed: {seed}\ninitialReplicas: {n//3}\n",[(r,3600)])
        classes[f"noise-wrong-nomembers-P{P}-s{seed}"]=(P,f"noise: 0.2\nseed: {seed}\ninitialReplicas: {n//3}\nmembersReported: false\n",[(r,3600)])
def body(name,P,extra,load,phase):
    t=f"name: {name}\npartitions: {P}\n{extra}load:\n"
    first=load[0]
    r0=first[1] if first[0]=="ramp" else first[0]
    t+=seg(r0,phase)
    for L in load:
        t+= ramp(L[1],L[2],L[3]) if L[0]=="ramp" else seg(L[0],L[1])
    return t
jobs=[]
for name,(P,extra,load) in classes.items():
    for phase in (1,4,7,10,13):
        for mode in ("eager","cooperative"):
            jobs.append((name,P,extra,load,phase,mode))
def run(j):
    name,P,extra,load,phase,mode=j
    f=os.path.join(DIR,f"{name}-{phase}-{mode}.yaml")
    open(f,"w").write(body(name,P,extra,load,phase))
    out=subprocess.run([B,"simulate","--scenario",f,"--rebalance",mode,"--json"],capture_output=True,text=True)
    if out.returncode: return (j,None,out.stderr)
    rows={r["policy"]:r for r in json.loads(out.stdout)["rows"]}
    return (j,rows,None)
res=list(ThreadPoolExecutor(2).map(run,jobs))
shutil.rmtree(DIR)
worst_pods=[];worst_p99=[];dom=[]
for j,rows,err in res:
    if err: print("ERR",j[0],err[:200]); continue
    L=rows["lagrate"]; I=rows["ideal-reactive"]
    pr=L["pod_seconds"]/max(I["pod_seconds"],1)
    p99=(L["p99_wait_s"]+5)/(I["p99_wait_s"]+5)
    worst_pods.append((pr,j[0],j[4],j[5],L["scale_actions"],L["reversals"]))
    worst_p99.append((p99,j[0],j[4],j[5],L["p99_wait_s"],I["p99_wait_s"]))
    for k in ("keda-lag","keda-lag-tuned","keda-lag-plus-rate"):
        K=rows[k]
        if K["pod_seconds"]<L["pod_seconds"]*0.98 and K["p99_wait_s"]<L["p99_wait_s"]*0.98:
            dom.append((j[0],j[4],j[5],k,round(K["pod_seconds"]),round(L["pod_seconds"]),K["p99_wait_s"],L["p99_wait_s"]))
worst_pods.sort(reverse=True); worst_p99.sort(reverse=True)
print("runs",len(res))
print("worst pod-seconds ratio lagrate/ideal-reactive:"); [print("  %.2f %s phase %ds %s actions %d rev %d"%w) for w in worst_pods[:6]]
print("worst p99 ratio (p99+5s)/(ideal+5s):"); [print("  %.2f %s phase %ds %s lagrate %.1fs ideal %.1fs"%w) for w in worst_p99[:6]]
print("KEDA dominates lagrate (both pods and p99 better by >2%%): %d"%len(dom)); [print("  ",d) for d in dom[:10]]
# Noise classes: actions and reversals (goal: right start none, wrong start at most one reversal).
noisy=[(j[0],j[4],j[5],rows["lagrate"]["scale_actions"],rows["lagrate"]["reversals"]) for j,rows,err in res if rows and j[0].startswith("noise")]
right=max((n for n in noisy if "-right-" in n[0]),key=lambda n:n[3])
wrong=max((n for n in noisy if "-wrong-" in n[0]),key=lambda n:n[4])
print("noise started right, most actions: %d (%s phase %ds %s)"%(right[3],right[0],right[1],right[2]))
print("noise started wrong, most reversals: %d (%s phase %ds %s)"%(wrong[4],wrong[0],wrong[1],wrong[2]))
