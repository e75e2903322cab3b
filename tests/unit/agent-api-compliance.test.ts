// One AgentApi compliance suite (agent/src/agent/testing/compliance.ts) against both implementations: the fake the
// web UI's tests use, and the real AgentRuntime on loopback (real DC registrations, a real SQLite file, phones that
// enroll over UDP), so the page's tests against the fake say something about the real agent.
import { agentApiCompliance } from '../../agent/src/agent/testing/compliance.js';
import { fakeAgentHarness, runtimeHarness } from '../../agent/src/agent/testing/harness.js';

agentApiCompliance('FakeAgent', fakeAgentHarness);
agentApiCompliance('AgentRuntime (loopback, no data plane)', runtimeHarness);
