#!/usr/bin/env python3
"""Sweeps lagrate's policy over load shapes it was not tuned on and prints
the worst case against ideal-reactive, and any KEDA variant that beats it on
both pod-seconds and p99 wait.

Classes: steps, periodic bursts with short and long idle gaps, ramps, a
hot partition (steady, and falling after a peak), a scaler restart with a
member count, with only the workload's scale (scaleTarget), and with
neither (two partition counts and rates each) and an hour of
noise at a partition boundary (four seeds, two partition counts, started at
the right size and at a third of it, with a member count and with neither it
nor the workload's scale); each
at five phases of the sampling and HPA sync grid (a prefix of 1/4/7/10/13
s), eager and cooperative.

    cargo build --release --bins && python3 scripts/sweep-policy.py

With --builtins, prints the table of every built-in scenario against
ideal-reactive and writes it into docs/evaluation.md.

With --random N (and --seed S), runs N random scenarios of each class
instead: noise (started right or wrong, with a member count or with neither
it nor the workload's scale),
steps, bursts (with or without a base rate), ramps, a hot partition,
restarts and daily curves, on 6 to 64 partitions at rates up to 80 % of
what one pod per partition serves, at a random phase and rebalance mode.
With --world-times, each random world's pods also start and rebalance in
their own times (5 s to 180 s each, log-uniform, independently: the name
ends -S<start>R<rebalance>) while the policy keeps its 60 s priors, as an
unconfigured install would.

    python3 scripts/sweep-policy.py --random 30 --seed 11 [--world-times]

With --objective S, every run uses that waitObjectiveSeconds. LAGRATE_BIN
names the binary: run two builds on the same seed to compare them side by
side.
"""
import argparse, json, math, os, random, shutil, subprocess, tempfile
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
    classes[f"restart-nomembers-P{P}-r{r}"]=(P,"scalerRestarts: [1230]\nmembersReported: false\nscaleTargetReported: false\n",[(r,300),(6*r,900),(2*r,1200)])
    classes[f"ramp-P{P}-r{r}"]=(P,"",[("ramp",r,10*r,900),(10*r,600),("ramp",10*r,r,600)])
    classes[f"hot-P{P}-r{r}"]=(P,"hotPartitionShare: 0.15\n",[(r,300),(4*r,1200),(r,600)])
    classes[f"restart-P{P}-r{r}"]=(P,"scalerRestarts: [900]\n",[(r,300),(6*r,900),(2*r,900)])
    # No member count, but the workload's scale (scaleTarget).
    classes[f"restart-scale-P{P}-r{r}"]=(P,"scalerRestarts: [1230]\nmembersReported: false\n",[(r,300),(6*r,900),(2*r,1200)])
for seed in (1,2,3,42):
    # Steady noisy load at a partition boundary (12 pods of 2 partitions
    # serve 1000 msg/s with nothing to spare at 20 % headroom), started at
    # the right size and at a third of it, for an hour.
    for P,r,n in [(24,1000,12),(48,2000,24)]:
        classes[f"noise-right-P{P}-s{seed}"]=(P,f"noise: 0.2\nseed: {seed}\ninitialReplicas: {n}\n",[(r,3600)])
        classes[f"noise-wrong-P{P}-s{seed}"]=(P,f"noise: 0.2\nseed: {seed}\ninitialReplicas: {n//3}\n",[(r,3600)])
        classes[f"noise-wrong-nomembers-P{P}-s{seed}"]=(P,f"noise: 0.2\nseed: {seed}\ninitialReplicas: {n//3}\nmembersReported: false\nscaleTargetReported: false\n",[(r,3600)])
def body(name,P,extra,load,phase):
    t=f"name: {name}\npartitions: {P}\n{extra}load:\n"
    first=load[0]
    r0=first[1] if first[0]=="ramp" else first[0]
    t+=seg(r0,phase)
    for L in load:
        t+= ramp(L[1],L[2],L[3]) if L[0]=="ramp" else seg(L[0],L[1])
    return t
def sine(b,a,p,s): return "  - { sine: { base: %g, amplitude: %g, periodSeconds: %g }, seconds: %g }\n"%(b,a,p,s)
def random_scenario(rng,cls,i):
    """One scenario of class `cls`: (name, mode, YAML text)."""
    P=rng.choice([6,8,12,16,24,32,48,64]); top=P*100.0*0.8
    phase=rng.uniform(0.5,15); extra=""
    if cls=="noise":
        r=rng.uniform(0.1,0.8)*top; right=rng.random()<0.5
        extra=f"noise: {rng.choice([0.05,0.1,0.2,0.3])}\nseed: {rng.randrange(1000)}\n"
        if not right: extra+=f"initialReplicas: {max(1,int(r/100/rng.uniform(1.5,4)))}\n"
        if rng.random()<0.3: extra+="membersReported: false\nscaleTargetReported: false\n"
        load=seg(r,phase)+seg(r,3600); cls+="-right" if right else "-wrong"
    elif cls=="steps":
        r=rng.uniform(0.05,0.2)*top; load=seg(r,phase)
        for _ in range(rng.randint(2,5)): load+=seg(rng.uniform(0.02,1.0)*top,rng.uniform(300,1200))
        load+=seg(r,600)
    elif cls=="bursts":
        b=rng.uniform(0.2,1.0)*top; d=rng.uniform(20,180); gap=rng.uniform(60,1200)
        base=rng.choice([0,0,rng.uniform(0,0.05)*top]); load=seg(base,phase+rng.uniform(30,200))
        for _ in range(rng.randint(2,5)): load+=seg(b,d)+seg(base,gap)
    elif cls=="ramp":
        a=rng.uniform(0,0.1)*top; b=rng.uniform(0.3,1.0)*top
        load=(seg(a,phase+120)+ramp(a,b,rng.uniform(120,1800))+seg(b,rng.uniform(120,900))
              +ramp(b,a,rng.uniform(120,1800))+seg(a,600))
    elif cls=="hot":
        extra=f"hotPartitionShare: {rng.uniform(1.5/P,0.35):.3f}\n"
        r=rng.uniform(0.05,0.2)*top
        load=seg(r,phase+300)+seg(rng.uniform(0.2,0.7)*top,rng.uniform(300,1200))+seg(r,rng.uniform(600,1800))
    elif cls=="restart":
        hold=rng.uniform(300,900)
        extra=f"scalerRestarts: [{300+hold*rng.uniform(0.1,1.5):.0f}]\n"
        if rng.random()<0.5: extra+="membersReported: false\nscaleTargetReported: false\n"
        load=(seg(rng.uniform(0.05,0.15)*top,phase+300)+seg(rng.uniform(0.3,0.8)*top,hold)
              +seg(rng.uniform(0.1,0.3)*top,1200))
    else:
        b=rng.uniform(0.2,0.5)*top
        extra=f"noise: {rng.choice([0,0.05,0.1])}\nseed: {rng.randrange(1000)}\n"
        load=seg(b,phase)+sine(b,b*rng.uniform(0.3,0.9),rng.uniform(1800,7200),7200)
    name=f"{cls}-{i}-P{P}"
    return name,rng.choice(["eager","cooperative"]),f"name: {name}\npartitions: {P}\n{extra}load:\n{load}"
ap=argparse.ArgumentParser(description="Sweep lagrate's policy; print the worst case against ideal-reactive.")
ap.add_argument("--random",type=int,metavar="N",help="N random scenarios per class instead of the fixed grid")
ap.add_argument("--seed",type=int,default=11,help="seed of --random")
ap.add_argument("--world-times",action="store_true",help="with --random: the pods start and rebalance in 5-180 s each, the policy keeps its 60 s priors")
ap.add_argument("--keep",metavar="DIR",help="write the scenario files to DIR and keep them (rerun one with lagrate simulate --scenario FILE --explain)")
ap.add_argument("--objective",type=float,metavar="S",help="the policy's waitObjectiveSeconds")
ap.add_argument("--builtins",action="store_true",help="print the table of every built-in scenario against ideal-reactive, write it into docs/evaluation.md, and stop")
args=ap.parse_args()
def builtin_row(name):
    """The row of one built-in: pods x ideal, p99 x ideal, actions (reversals), per mode."""
    cells=[]
    for mode in ("eager","cooperative"):
        out=subprocess.run([B,"simulate","--scenario",name,"--rebalance",mode,"--json"],capture_output=True,text=True,check=True)
        rows={r["policy"]:r for r in json.loads(out.stdout)["rows"]}
        L=rows["lagrate"]; I=rows["ideal-reactive"]
        cells.append("%.2f, %.2f, %d (%d)"%(L["pod_seconds"]/max(I["pod_seconds"],1),(L["p99_wait_s"]+5)/(I["p99_wait_s"]+5),L["scale_actions"],L["reversals"]))
    return "| `%s` | %s | %s |"%(name,cells[0],cells[1])
if args.builtins:
    listed=subprocess.run([B,"simulate","--list"],capture_output=True,text=True,check=True).stdout
    names=[l.split("\t")[0] for l in listed.splitlines() if l.strip()]
    table="\n".join(["| scenario | eager: pods × ideal, p99 × ideal, actions (reversals) | cooperative |","|---|---|---|",*ThreadPoolExecutor(2).map(builtin_row,names)])
    print(table)
    # The table between the markers of docs/evaluation.md, so that a policy
    # change rewrites the figures it changes and nothing else.
    doc=os.path.join(ROOT,"docs","evaluation.md")
    text=open(doc).read()
    begin,end="<!-- builtins:begin -->\n","\n<!-- builtins:end -->"
    start,stop=text.index(begin)+len(begin),text.index(end)
    open(doc,"w").write(text[:start]+table+text[stop:])
    shutil.rmtree(DIR)
    raise SystemExit(0)
if args.keep:
    os.makedirs(args.keep,exist_ok=True)
    shutil.rmtree(DIR)
    DIR=args.keep
jobs=[]
if args.random:
    rng=random.Random(args.seed)
    # A second generator, so that --world-times leaves the loads of a
    # seed as they are without it.
    times=random.Random(args.seed+1)
    for cls in ("noise","steps","bursts","ramp","hot","restart","daily"):
        for i in range(args.random):
            name,mode,text=random_scenario(rng,cls,i)
            if args.world_times:
                S,R=(round(math.exp(times.uniform(math.log(5),math.log(180)))) for _ in range(2))
                text=text.replace(f"name: {name}\n",f"name: {name}-S{S}R{R}\nstartupSeconds: {S}\nrebalanceSeconds: {R}\n")
                name=f"{name}-S{S}R{R}"
            jobs.append((name,text,0,mode))
else:
    for name,(P,extra,load) in classes.items():
        for phase in (1,4,7,10,13):
            for mode in ("eager","cooperative"):
                jobs.append((name,body(name,P,extra,load,phase),phase,mode))
# Runs whose peak exceeds what one pod per partition serves (the goal
# speaks of feasible ones; they are counted, and marked).
infeasible=set()
policy="".join(f"  {k}: {v}\n" for k,v in (("waitObjectiveSeconds",args.objective),) if v is not None)
def run(j):
    name,text,phase,mode=j
    # A policy of its own names the assignor, as the default one does.
    if policy: text=text.replace("load:\n",f"policy:\n{policy}  rebalance: {mode}\nload:\n",1)
    f=os.path.join(DIR,f"{name}-{phase}-{mode}.yaml")
    open(f,"w").write(text)
    out=subprocess.run([B,"simulate","--scenario",f,"--rebalance",mode,"--json"],capture_output=True,text=True)
    if out.returncode: return (j,None,out.stderr)
    report=json.loads(out.stdout)
    rows={r["policy"]:r for r in report["rows"]}
    if not report["feasible"]: infeasible.add((name,phase,mode))
    return (j,rows,None)
res=list(ThreadPoolExecutor(2).map(run,jobs))
if not args.keep: shutil.rmtree(DIR)
worst_pods=[];worst_p99=[];dom=[]
# The same ratios for perfect knowledge behind KEDA and the HPA: the part
# of a run's gap that no policy behind KEDA can close.
pipeline={}
for j,rows,err in res:
    if err: print("ERR",j[0],err[:200]); continue
    L=rows["lagrate"]; I=rows["ideal-reactive"]; K=rows["ideal-behind-keda"]
    pipeline[(j[0],j[2],j[3])]=(K["pod_seconds"]/max(I["pod_seconds"],1),(K["p99_wait_s"]+5)/(I["p99_wait_s"]+5))
    pr=L["pod_seconds"]/max(I["pod_seconds"],1)
    p99=(L["p99_wait_s"]+5)/(I["p99_wait_s"]+5)
    worst_pods.append((pr,j[0],j[2],j[3],L["scale_actions"],L["reversals"]))
    worst_p99.append((p99,j[0],j[2],j[3],L["p99_wait_s"],I["p99_wait_s"]))
    for k in ("keda-lag","keda-lag-tuned","keda-lag-plus-rate"):
        K=rows[k]
        if K["pod_seconds"]<L["pod_seconds"]*0.98 and K["p99_wait_s"]<L["p99_wait_s"]*0.98:
            dom.append((j[0],j[2],j[3],k,round(K["pod_seconds"]),round(L["pod_seconds"]),K["p99_wait_s"],L["p99_wait_s"]))
worst_pods.sort(reverse=True); worst_p99.sort(reverse=True)
print("runs",len(res))
print("worst pod-seconds ratio lagrate/ideal-reactive:"); [print("  %.2f %s phase %ds %s actions %d rev %d"%w) for w in worst_pods[:6]]
print("worst p99 ratio (p99+5s)/(ideal+5s):"); [print("  %.2f %s phase %ds %s lagrate %.1fs ideal %.1fs"%w) for w in worst_p99[:6]]
print("KEDA dominates lagrate (both pods and p99 better by >2%%): %d"%len(dom)); [print("  ",d) for d in dom]
# Noise classes: actions and reversals (goal: right start none, wrong start at most one reversal).
noisy=[(j[0],j[2],j[3],rows["lagrate"]["scale_actions"],rows["lagrate"]["reversals"]) for j,rows,err in res if rows and j[0].startswith("noise")]
right=max((n for n in noisy if "-right-" in n[0]),key=lambda n:n[3],default=None)
wrong=max((n for n in noisy if "-wrong-" in n[0]),key=lambda n:n[4],default=None)
if right: print("noise started right, most actions: %d (%s phase %ds %s)"%(right[3],right[0],right[1],right[2]))
if wrong: print("noise started wrong, most reversals: %d (%s phase %ds %s)"%(wrong[4],wrong[0],wrong[1],wrong[2]))
# Per class: geometric means of the two ratios, and how many runs miss 1.15x.
def cls_of(name):
    words=[]
    for w in name.split("-"):
        if w[0].isdigit() or (w[0]=="P" and w[1:].isdigit()): break
        words.append(w)
    return "-".join(words)
by_cls={}
for (pr,name,*_),(p99,*_) in zip(sorted(worst_pods,key=lambda w:(w[1],w[2],w[3])),sorted(worst_p99,key=lambda w:(w[1],w[2],w[3]))):
    by_cls.setdefault(cls_of(name),[]).append((pr,p99))
gm=lambda xs: math.exp(sum(math.log(x) for x in xs)/len(xs))
print("by class: runs, geometric mean of pods and p99 x ideal-reactive, runs beyond 1.15x")
for c,v in sorted(by_cls.items()):
    print("  %-20s %4d  pods %.2f  p99 %.2f  beyond %d"%(c,len(v),gm([x[0] for x in v]),gm([x[1] for x in v]),sum(1 for x in v if max(x)>1.15)))
allv=[x for v in by_cls.values() for x in v]
if allv: print("  %-20s %4d  pods %.2f  p99 %.2f  beyond %d"%("all",len(allv),gm([x[0] for x in allv]),gm([x[1] for x in allv]),sum(1 for x in allv if max(x)>1.15)))
over=sorted(((max(p[0],q[0]),p[1],p[2],p[3]) for p,q in zip(sorted(worst_pods,key=lambda w:(w[1],w[2],w[3])),sorted(worst_p99,key=lambda w:(w[1],w[2],w[3])))),reverse=True)
beyond=[o for o in over if o[0]>1.15]
print("runs beyond 1.15x ideal-reactive on pod-seconds or p99: %d of %d (%d of them infeasible)"%(len(beyond),len(over),sum(1 for o in beyond if o[1:] in infeasible)))
for o in beyond:
    k=max(pipeline[o[1:]])
    print("  %.2f %s phase %ds %s"%o+("  (infeasible)" if o[1:] in infeasible else "")+("  (ideal-behind-keda %.2f)"%k if k>1.15 else ""))
# The objective does what it says: on daily curves, ramps and noise, p99
# within waitObjectiveSeconds wherever that exceeds start-up plus rebalance.
import re
W=args.objective or 60.0
def world(text,key):
    m=re.search(r"^%s: ([0-9.]+)"%key,text,re.M)
    return float(m.group(1)) if m else 60.0
held=[(j[0],j[2],j[3],rows["lagrate"]["p99_wait_s"]) for j,rows,err in res
      if rows and cls_of(j[0]).split("-")[0] in ("daily","ramp","noise")
      and W>world(j[1],"startupSeconds")+world(j[1],"rebalanceSeconds")]
late=[h for h in held if h[3]>W]
print("objective %gs where it exceeds start-up + rebalance (daily, ramp, noise): p99 above it in %d of %d runs"%(W,len(late),len(held)))
for h in late: print("  %s phase %ds %s p99 %.1fs"%h)
kv=list(pipeline.values())
if kv:
    print("ideal-behind-keda (the exact load and backlog, answered through KEDA and the HPA as lagrate is): pods %.2f  p99 %.2f  beyond 1.15x %d of %d; lagrate beyond where it is not: %d"%(
        gm([x[0] for x in kv]),gm([x[1] for x in kv]),sum(1 for x in kv if max(x)>1.15),len(kv),sum(1 for o in beyond if max(pipeline[o[1:]])<=1.15)))
