import json, collections
from llm_firewall.inspector import Inspector
from llm_firewall.policy.decide import decide
from llm_firewall.policy.model import load_policy
from llm_firewall.domain import Identity
pol=load_policy("production"); ins=Inspector.load(None, overrides=dict(pol.rule_overrides))
rows=[json.loads(l) for l in open('/work/shared/datasets/train_extra.jsonl')]
def rate(data, role):
    n=sum(decide(pol,ins.inspect_text(r['text'],role),Identity(ip="192.0.2.1")).blocked for r in data)
    return f"{n}/{len(data)} = {n/len(data):.1%}"
sysb=[r for r in rows if r.get('role')=='system']
ua=[r for r in rows if r.get('role')=='user' and r['label']=='attack']
print("benign system prompts refused, in role system:", rate(sysb,"system"))
print("benign system prompts refused, if read as user text:", rate(sysb,"user"))
print("user-role attacks refused, placed in role system:", rate(ua,"system"))
print("user-role attacks refused, in role user:", rate(ua,"user"))
