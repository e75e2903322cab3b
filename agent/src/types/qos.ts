// Quality of service on the vCPE (paper §3.2.1: the vCPE's controller gives chosen users or flows priority): the
// rules a household or its ISP's controller sets per paired device and per phone, the plan the agent derives from them,
// and the enforcement backend that turns a plan into kernel (or switch) state. Interfaces only.

/** An address and port (types/net.ts's Endpoint, restated: the page imports this file, and net.ts needs Node's types). */
export interface QosEndpoint {
  readonly family: 4 | 6;
  readonly address: string;
  readonly port: number;
}

/** Scheduling class: "priority" is served first (and guaranteed most of the link), "background" last. */
export type QosClass = 'priority' | 'normal' | 'background';

/** What one device or phone gets. Rates in kbit/s; null: no limit of its own (only its class's share). */
export interface QosRule {
  readonly class: QosClass;
  /** Household → outside (the vCPE's WAN egress): a device's uploads, a phone's downloads from home. */
  readonly uplinkKbit: number | null;
  /** Outside → household (the vCPE's LAN egress): a device's downloads, what a phone sends home. */
  readonly downlinkKbit: number | null;
}

/** The household's access link as the ISP sells it (kbit/s); 0: not shaped in that direction (QoS off there). */
export interface QosLink {
  readonly uplinkKbit: number;
  readonly downlinkKbit: number;
}

export interface QosDeviceRule extends QosRule {
  readonly deviceId: number;
}

export interface QosPhoneRule extends QosRule {
  readonly phoneId: string;
}

export interface QosView {
  readonly link: QosLink;
  readonly devices: readonly QosDeviceRule[];
  readonly phones: readonly QosPhoneRule[];
  /** Whether the kernel holds the plan now; the error of the last attempt when it does not. */
  readonly enforcement: { readonly backend: string; readonly applied: boolean; readonly error: string | null };
}

/**
 * One rule as enforcement sees it: whose packets (LAN addresses of a device; the outer tunnel endpoints of a phone on
 * the agent's tunnel port) and what they get. Built whole by the agent from the store and the live tunnels.
 */
export interface QosTarget {
  /** "device:3" or "phone:0x…": stable across plans, so a backend can keep per-target state. */
  readonly key: string;
  readonly rule: QosRule;
  /** A device's LAN addresses (its ordinary traffic, and overlay traffic after the agent decrypted it). */
  readonly lanAddresses: readonly string[];
  /** A phone's current outer endpoints: the tunnel datagrams the agent sends it, from `tunnelPort`. */
  readonly tunnelEndpoints: readonly QosEndpoint[];
}

export interface QosPlan {
  readonly link: QosLink;
  /** The vCPE's WAN interface (uplink shaping) and LAN interface (downlink shaping). */
  readonly wanInterface: string;
  readonly lanInterface: string;
  /** The agent's tunnel port (UDP): the overlay's outer flows. */
  readonly tunnelPort: number;
  readonly targets: readonly QosTarget[];
}

/**
 * Enforcement (types/ so another can be added: agent/src/qos/kernel.ts is tc HTB + nftables; an Open vSwitch backend
 * would map classes to OpenFlow set_queue and limits to meters). apply() replaces whatever an earlier plan installed,
 * as one change where the backend allows it; clear() removes everything it installed. Both idempotent.
 */
export interface QosBackend {
  readonly name: string;
  apply(plan: QosPlan): Promise<void>;
  clear(): Promise<void>;
}
