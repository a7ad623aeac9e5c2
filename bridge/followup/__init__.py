"""Missed calls followed up: a missed call is "called back" once an employee reaches the customer or the
customer gets through later; `sweeper.FollowUpSweeper` records it (`missed_followups`) and queues
`call.called_back` on the missed call, so CRM connectors complete the missed-call task."""

from bridge.followup.sweeper import FollowUpSweeper

__all__ = ["FollowUpSweeper"]
