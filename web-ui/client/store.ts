// The page's state: what the agent last said (devices, phones, grants, status, events) and which page is shown; the
// loads that fill it. The shell (app.ts) is told when lists changed or the session ended, so the pages, which import
// this, never import the shell.
import { api, ApiError, type AgentEvent, type Device, type Enrollment, type Grant, type Phone, type Qos, type Session, type Status, type Traffic } from './api.js';

export type Page = 'devices' | 'phones' | 'access' | 'sharing' | 'status' | 'settings';
export const PAGES: readonly Page[] = ['devices', 'phones', 'access', 'sharing', 'status', 'settings'];

/** Which lists to read again (the live stream's `changed` event says the same). */
export interface Changed {
  devices?: boolean;
  phones?: boolean;
  grants?: boolean;
}

export const state = {
  session: null as Session | null,
  devices: [] as Device[],
  phones: [] as Phone[],
  grants: [] as Grant[],
  status: null as Status | null,
  /** Each connection's traffic of the last minutes (the status page's charts). */
  traffic: null as Traffic | null,
  /** QoS rules (the "this device first" switches); read with the devices. */
  qos: null as Qos | null,
  events: [] as AgentEvent[],
  /** The enrollment on screen, and the phones that existed when it was made (to notice the new one). */
  enrollment: null as { view: Enrollment; before: Set<string>; joined: Phone | null } | null,
  live: null as EventSource | null,
  /** A question ("Unpair …?") is open: live updates wait, so the buttons do not vanish under the person's finger. */
  confirming: false,
  /** Lists changed while a question was open: redraw them once it is answered. */
  deferred: false,
};

export function page(): Page {
  const p = location.hash.replace(/^#/, '') as Page;
  return PAGES.includes(p) ? p : 'devices';
}

/** What the shell does for the pages; app.ts sets it once at start. */
export interface Shell {
  /** Asks the agent for the session and shows what fits: setup, sign-in or the current page. */
  start(): Promise<void>;
  /** Lists were read again (after a change made here or announced live). */
  changed(c: Changed): void;
  /** Redraws the lists of the current page. */
  redraw(c: Changed): void;
}

let shell: Shell = { start: () => Promise.resolve(), changed: () => undefined, redraw: () => undefined };

export function setShell(s: Shell): void {
  shell = s;
}

export function restart(): Promise<void> {
  return shell.start();
}

export async function loadAll(): Promise<void> {
  const [devices, phones, grants, status, traffic, events, qos] = await Promise.all([api.devices(), api.phones(), api.grants(), api.status(), api.traffic(), api.events(30), api.qos()]);
  Object.assign(state, { devices, phones, grants, status, traffic, events, qos });
}

export async function refresh(c: Changed): Promise<void> {
  try {
    const [devices, phones, grants, qos] = await Promise.all([
      c.devices ? api.devices() : state.devices,
      c.phones ? api.phones() : state.phones,
      c.grants ? api.grants() : state.grants,
      c.devices ? api.qos() : state.qos,
    ]);
    Object.assign(state, { devices, phones, grants, qos });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) void restart();
    return;
  }
  shell.changed(c);
}

/** A question was answered (or cancelled): the live redraws it held back happen now. */
export function confirmEnded(): void {
  state.confirming = false;
  if (state.deferred) {
    state.deferred = false;
    shell.redraw({ devices: true, phones: true, grants: true });
  }
}
