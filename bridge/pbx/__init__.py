"""PBX adapters. Each adapter turns a vendor's webhooks into typed `PbxEvent`s (see `bridge.pbx.events`)."""
