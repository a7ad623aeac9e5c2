// The peer for bench/ingest.py: the mango-vpbx package's Express receiver, wired as its README's
// "API RealTime" example (body-parser urlencoded + the Realtime middlewares). Like the package, it
// checks no signature and stores nothing; the listeners do nothing (the example logs to the console).
// Run: NODE_PATH=bench/.peer/node_modules PORT=8091 node bench/peer/server.js
'use strict';
const express = require('express'); // the version mango-vpbx itself depends on (hoisted)
const bodyParser = require('body-parser');
const VPBX = require('mango-vpbx');

const port = Number(process.env.PORT || 8091);
const vpbx = new VPBX('bench-key', 'bench-salt');
const events = vpbx.events(`http://127.0.0.1:${port}/mango`);
const app = express();
app.use(bodyParser.urlencoded({ extended: false }));
for (const name of ['call', 'summary', 'recording', 'dtmf', 'sms', 'ping']) {
  app.use(events[name]);
  events.on(name, () => {});
}
app.get('/healthz', (req, res) => res.send({ status: 'ok' }));
app.use((req, res) => res.status(404).send({ error: 'not found' }));
app.listen(port, '127.0.0.1', () => console.log(`peer listening on ${port}`));
