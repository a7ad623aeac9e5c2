"""Routing a call that waits in the IVR to the familiar or the CRM's responsible employee (mango.md §5).

`service.RoutingService` watches the processor's new leg events: an incoming leg that `Appeared` in the
IVR on a routed line gets one decision (`decide.Decider`: the employee who last talked with the number
within the window, from the store; else the responsible a CRM connector names, under the deadline; busy
and inactive employees skipped), stored on the call (`store`, table `call_routes`), and a
`commands/route` through the command journal, paced to Mango's limit by `queue.RouteQueue`.
"""

from bridge.routing.decide import Decider, Decision
from bridge.routing.service import RoutingService

__all__ = ["Decider", "Decision", "RoutingService"]
