// What kind of appliance a device is, guessed from its DNS-SD service types (RFC 6763), TXT records and name.
// The guess only labels the device in the web page (an icon, a word); nothing is decided by it.
import type { DiscoveredService } from './types.js';

/** Service type → kind. Types that say little on their own (_http._tcp) are absent: the name decides then. */
const BY_TYPE: ReadonlyMap<string, string> = new Map([
  ['_hue._tcp', 'lamp'],
  ['_lifx._tcp', 'lamp'],
  ['_ipp._tcp', 'printer'],
  ['_ipps._tcp', 'printer'],
  ['_printer._tcp', 'printer'],
  ['_pdl-datastream._tcp', 'printer'],
  ['_scanner._tcp', 'printer'],
  ['_uscan._tcp', 'printer'],
  ['_rtsp._tcp', 'camera'],
  ['_googlecast._tcp', 'media player'],
  ['_airplay._tcp', 'media player'],
  ['_raop._tcp', 'speaker'],
  ['_spotify-connect._tcp', 'speaker'],
  ['_sonos._tcp', 'speaker'],
  ['_smb._tcp', 'storage'],
  ['_afpovertcp._tcp', 'storage'],
  ['_nfs._tcp', 'storage'],
  ['_ssh._tcp', 'computer'],
  ['_workstation._tcp', 'computer'],
  ['_mqtt._tcp', 'hub'],
  ['_home-assistant._tcp', 'hub'],
  ['_matter._tcp', 'smart device'],
  ['_hap._tcp', 'smart device'],
]);

/**
 * HomeKit Accessory Protocol category ids (TXT key "ci", HAP specification, "Accessory Categories"); the ones a
 * household's appliances actually use.
 */
const HAP_CATEGORY: ReadonlyMap<string, string> = new Map([
  ['2', 'hub'],
  ['3', 'fan'],
  ['5', 'lamp'],
  ['6', 'lock'],
  ['7', 'plug'],
  ['8', 'switch'],
  ['9', 'thermostat'],
  ['10', 'sensor'],
  ['17', 'camera'],
  ['18', 'doorbell'],
  ['19', 'air purifier'],
  ['26', 'speaker'],
  ['31', 'tv'],
]);

/** Words in a name, checked in order: the first match wins ("Hall Camera Light" is a camera). */
const BY_NAME: readonly (readonly [RegExp, string])[] = [
  [/\b(camera|cam|webcam|doorbell)\b/i, 'camera'],
  [/\b(printer|print|scanner)\b/i, 'printer'],
  [/\b(lamp|light|bulb|lights)\b/i, 'lamp'],
  [/\b(plug|socket|outlet)\b/i, 'plug'],
  [/\b(thermostat|heating|heater)\b/i, 'thermostat'],
  [/\b(speaker|sonos|soundbar)\b/i, 'speaker'],
  [/\b(tv|television|chromecast)\b/i, 'tv'],
  [/\b(sensor)\b/i, 'sensor'],
];

/** The kind of a device from its services (most specific first) and, failing that, its name; "" when unknown. */
export function kindOf(services: readonly DiscoveredService[], name: string): string {
  for (const s of services) {
    if (s.type === '_hap._tcp') {
      const c = s.txt['ci'];
      if (c !== undefined && HAP_CATEGORY.has(c)) return HAP_CATEGORY.get(c)!;
    }
  }
  // Specific service types beat a guess from the name; generic ones ("smart device") do not.
  let generic = '';
  for (const s of services) {
    const k = BY_TYPE.get(s.type);
    if (k === undefined) continue;
    if (k === 'smart device') generic = k;
    else return k;
  }
  for (const [re, k] of BY_NAME) if (re.test(name)) return k;
  return generic;
}
