"""The negative-spike alert: the pure policy, the monitor that drives it, and its lease.

- `policy`: the state machine (`evaluate`) and its types; no I/O.
- `monitor`: `AlertMonitor`, the loop that reads the window through `store` and publishes.
- `lease`: who may write (`Lease`, `RedisLease`, `lease_for`).
"""

from sentiment_platform.bus.redis import RedisLease
from sentiment_platform.services.alerting.lease import Lease, lease_for
from sentiment_platform.services.alerting.monitor import AlertMonitor
from sentiment_platform.services.alerting.policy import ALERT_TYPE, Action, State

__all__ = ["ALERT_TYPE", "Action", "AlertMonitor", "Lease", "RedisLease", "State", "lease_for"]
