"""Commands the bridge sends to the PBX on someone's behalf (click-to-call, a widget's callback, routing).

The package owns the life of every such command: `journal.CommandJournal` records it in the `commands`
table before it is sent, stores how sending went and the asynchronous result Mango posts later, times out
a command whose result never comes, and finds the legs it caused. `originate` is click-to-call over it;
add-ons (the widget) send their commands through the same journal.
"""
