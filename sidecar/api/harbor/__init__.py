"""Harbor's v2.0 REST API for webhook policies, their history, projects, the global switch,
artifact scans, registries and replication (policies, executions, tasks), and tag retention.

Same paths, bodies, status codes, headers and messages as Harbor, so scripts, Harbor's API
clients and the Terraform provider work unchanged. One module per resource; `blueprint` holds
what they share, `params` Harbor's request conventions, `shapes` its response models.
Deviations, each on purpose:
- auth_header (and any signing secret) is answered masked as "***"; sent back unchanged in a
  PUT, the stored secret is kept.
- Policies from the rules file are read-only here: 403 FORBIDDEN, saying the rules file
  manages them (RBAC-style, as Harbor answers what a user may not change).
- One task per execution (one delivery per event x policy x target); task id = execution id.
- The test endpoint Harbor removed is back, made safe (see dispatch/probe.py).
- Quotas from the rules file are read-only, as its policies; PUT /projects/{p} honours
  `storage_limit` (Harbor ignores it there).
All database work runs through the runtime's executor, never on the event loop.
"""

from sidecar.api.harbor import artifacts as artifacts
from sidecar.api.harbor import configurations as configurations
from sidecar.api.harbor import executions as executions
from sidecar.api.harbor import policies as policies
from sidecar.api.harbor import policy_health as policy_health
from sidecar.api.harbor import policy_probe as policy_probe
from sidecar.api.harbor import projects as projects
from sidecar.api.harbor import quotas as quotas
from sidecar.api.harbor import registries as registries
from sidecar.api.harbor import replication as replication
from sidecar.api.harbor import retentions as retentions
from sidecar.api.harbor import scanners as scanners
from sidecar.api.harbor.blueprint import bp as bp

__all__ = ["artifacts", "bp", "configurations", "executions", "policies", "policy_health",
           "policy_probe",
           "projects", "quotas", "registries", "replication", "retentions"]
