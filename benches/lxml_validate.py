#!/usr/bin/env python3
"""libxml2's validation throughput (via lxml) over the corpus, for comparison with ours.

Usage: lxml_validate.py CORPUS_DIR XSD_DIR SECONDS
Each schema set is compiled once (outside the timing), and for each document the set is chosen
outside the timing too (as ../shared/tools/xsd-oracle does), so the figure is parse + validate
only: the most favourable measure for libxml2. Prints one line: docs/s and MB/s on one core.
"""
import os, sys, time

corpus, xsd_dir, seconds = sys.argv[1], os.path.abspath(sys.argv[2]), float(sys.argv[3])
os.environ["XML_CATALOG_FILES"] = os.path.join(xsd_dir, "catalog-local.xml")
from lxml import etree  # noqa: E402  (the catalog variable must be set before libxml2 loads)

sys.path.insert(0, os.path.join(xsd_dir, "..", "..", "tools"))
MH = "http://www.kith.no/xmlstds/msghead/2006-05-24"
APPREC = {"http://www.kith.no/xmlstds/apprec/2004-11-21": "apprec-v1.0/AppRec-v1-2004-11-21.xsd",
          "http://www.kith.no/xmlstds/apprec/2012-02-15": "apprec-v1.1/AppRec-v1.1.xsd"}

def ns(tag):
    return tag[1:].split("}")[0] if tag.startswith("{") else ""

def driver(root):
    seen = {ns(e.tag) for e in root.iter() if isinstance(e.tag, str)}
    if any("/xmlstds/po/" in n and "2009-06-30" in n for n in seen): return "drivers/msghead+plo-v1.5.xsd"
    if any("/xmlstds/po/" in n and "2012-04-01" in n for n in seen): return "drivers/msghead+plo-v1.6.xsd"
    if any("ehelse.no/xmlstds/po/" in n for n in seen): return "drivers/msghead+plo-v2.0.xsd"
    if "http://www.kith.no/xmlstds/dialog/2013-01-23" in seen: return "drivers/msghead+dialogmelding-v1.1.xsd"
    if "http://www.kith.no/xmlstds/dialog/2006-10-11" in seen: return "drivers/msghead+dialogmelding-v1.0.xsd"
    return "drivers/msghead-only.xsd"

docs = []
for d, _, fs in os.walk(corpus):
    for f in sorted(fs):
        if f.endswith(".xml"):
            with open(os.path.join(d, f), "rb") as fh:
                docs.append(fh.read())
schemas, plan = {}, []
for b in docs:
    try:
        root = etree.fromstring(b)
    except etree.XMLSyntaxError:
        plan.append((b, None)); continue
    if root.tag == "{%s}MsgHead" % MH:
        s = driver(root)
    elif ns(root.tag) in APPREC and root.tag.endswith("}AppRec"):
        s = APPREC[ns(root.tag)]
    else:
        plan.append((b, None)); continue
    if s not in schemas:
        schemas[s] = etree.XMLSchema(etree.parse(os.path.join(xsd_dir, s)))
    plan.append((b, schemas[s]))

parser = etree.XMLParser(resolve_entities=False, no_network=True)
n = nbytes = 0
# CPU time, like the Rust side: the machine is shared, wall time would measure the neighbours.
start = time.process_time()
wall = time.perf_counter()
while time.process_time() - start < seconds:
    for b, s in plan:
        try:
            doc = etree.fromstring(b, parser)
        except etree.XMLSyntaxError:
            doc = None
        if doc is not None and s is not None:
            s.validate(doc)
        n += 1
        nbytes += len(b)
el = time.process_time() - start
wall = time.perf_counter() - wall
print(f"lxml/libxml2 {etree.LIBXML_VERSION}: {n/el:.0f} docs/s, {nbytes/el/1e6:.1f} MB/s ({n} docs in {el:.2f} s CPU, {wall:.2f} s wall)")
