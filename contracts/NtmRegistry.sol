// SPDX-License-Identifier: UNLICENSED
// The NTMobile ledger (paper §2.2, §2.3): the DCs submit every terminal's signed Node Transaction here, and a DC
// finds the DC that manages a terminal, and every other DC, by reading this contract.
//
// Per terminal ID it keeps the managing DC, the Node Transaction's timestamp and the revocation flag; the Node
// Transaction itself lives in the NodeTransaction event (148 bytes of log cost a fraction of 5 storage slots).
// Per DC: its ID (= the account that sends its transactions), public key, signed directory record (endpoints), and
// the virtual address blocks it claims. Per Relay Server: the DC it serves, its public key and signed record (paper §3.1:
// RSs that come and go with load announce themselves to their DC here). Byte layouts: docs/protocol.md §1-§2;
// operation: docs/ledger.md.
pragma solidity 0.8.37;

contract NtmRegistry {
    // ---------------------------------------------------------------------------------------------------------
    // Node Transactions (docs/protocol.md §2): ver(1) id(20) pub(33) dc(20) rev(1) ts(8) | r(32) s(32) v(1).

    uint256 internal constant NT_LENGTH = 148;
    uint256 internal constant NT_SIGNED_LENGTH = 83;
    /** The domain tag the terminal's signature covers first: keccak256("NTM1 node-transaction" ‖ bytes 0..83). */
    bytes21 internal constant NT_TAG = "NTM1 node-transaction";
    /** floor(n / 2) for the secp256k1 order n: the terminal signs low-s only, so the malleable twin is refused. */
    uint256 internal constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    /** The secp256k1 field prime; (P + 1) / 4 is the square-root exponent (P ≡ 3 mod 4). */
    uint256 internal constant P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f;
    uint256 internal constant SQRT_EXP = 0x3fffffffffffffffffffffffffffffffffffffffffffffffffffffffbfffff0c;

    /** What became of one entry of a batch. Everything but Accepted leaves the ledger unchanged. */
    enum Status {
        Accepted,
        Duplicate, // the same (dc, timestamp, revoked) is already recorded: a resubmission, not an error
        Malformed, // version, key prefix or revocation flag out of range
        Signature, // not a low-s signature with v ∈ {27, 28} that recovers to the ID
        PublicKey, // the carried public key is not the ID's key
        WrongDc, // the Node Transaction names another DC than the sender
        Stale, // timestamp not newer than the recorded one (a replay)
        Revoked // the ID is revoked, and revocation is sticky
    }

    /** One storage slot per terminal. */
    struct Terminal {
        address dc;
        uint64 timestamp;
        bool revoked;
    }

    mapping(address => Terminal) internal terminals;

    event NodeTransaction(address indexed id, address indexed dc, uint64 timestamp, bool revoked, bytes nt);
    event NodeTransactionRefused(address indexed id, address indexed dc, uint256 index, Status status);
    /** A DC revoked a terminal it manages without the terminal's signature (an owner unpairing a lost device). */
    event RevokedByDc(address indexed id, address indexed dc);

    // ---------------------------------------------------------------------------------------------------------
    // DCs and their address blocks.

    struct Dc {
        bytes publicKey; // 33-byte compressed secp256k1 key; its ID is the DC's account
        bytes record; // the DC's signed directory record (protocol.md "NTM1 dc-record"): endpoints, pools
        uint64 updatedAt; // block number of the last change
    }

    /** A virtual address block: `len` leading bits of `base` (IPv4 in the low 32 bits). */
    struct AddressBlock {
        address dc;
        uint8 family; // 4 or 6
        uint8 len;
        uint128 base;
    }

    mapping(address => Dc) internal dcs;
    address[] internal dcList;
    AddressBlock[] internal blocks;

    event DcRecord(address indexed dc, bytes publicKey, bytes record);
    event BlockClaimed(address indexed dc, uint8 family, uint128 base, uint8 len);

    error NotADc(address sender);
    error BadPublicKey();
    error BadBatchLength(uint256 length);
    error BadBlock(uint8 family, uint128 base, uint8 len);
    error BlockOverlaps(uint8 family, uint128 base, uint8 len, address holder);
    error NoFreeBlock();
    error NotManagingDc(address id, address sender);
    error UnknownDc(address dc);
    error NotARelay(address sender);

    // ---------------------------------------------------------------------------------------------------------
    // Relay Servers (paper §3.1): each RS names the one DC it serves; that DC routes through it while it is here.

    struct Relay {
        address dc;
        bytes publicKey; // 33-byte compressed secp256k1 key; its ID is the RS's account
        bytes record; // the RS's signed record (protocol.md "NTM1 dc-record", role RS): its endpoints
        uint64 updatedAt; // block number of the last announcement
    }

    mapping(address => Relay) internal relays;
    address[] internal relayList;
    /** Position in relayList plus one (0: not announced), so a withdrawal removes in constant time. */
    mapping(address => uint256) internal relayIndex;

    event RelayRecord(address indexed rs, address indexed dc, bytes publicKey, bytes record);
    event RelayWithdrawn(address indexed rs, address indexed dc);

    modifier onlyDc() {
        if (dcs[msg.sender].updatedAt == 0) revert NotADc(msg.sender);
        _;
    }

    // ---------------------------------------------------------------------------------------------------------
    // Writes.

    /**
     * Records Node Transactions, `packed` = n × 148 bytes. A bad entry is skipped and reported (NodeTransactionRefused
     * and its status), never reverting the batch: one terminal's bad Node Transaction cannot block the others'.
     */
    function submit(bytes calldata packed) external onlyDc returns (Status[] memory statuses) {
        if (packed.length % NT_LENGTH != 0) revert BadBatchLength(packed.length);
        uint256 n = packed.length / NT_LENGTH;
        statuses = new Status[](n);
        for (uint256 i = 0; i < n; i++) {
            bytes calldata nt = packed[i * NT_LENGTH:(i + 1) * NT_LENGTH];
            Status s = _record(nt);
            statuses[i] = s;
            if (s != Status.Accepted) {
                emit NodeTransactionRefused(address(bytes20(nt[1:21])), address(bytes20(nt[54:74])), i, s);
            }
        }
    }

    /** Revokes terminals this DC manages (sticky, like a signed revocation). IDs managed elsewhere revert. */
    function revokeByDc(address[] calldata ids) external onlyDc {
        for (uint256 i = 0; i < ids.length; i++) {
            Terminal storage t = terminals[ids[i]];
            if (t.dc != msg.sender) revert NotManagingDc(ids[i], msg.sender);
            if (t.revoked) continue;
            t.revoked = true;
            emit RevokedByDc(ids[i], msg.sender);
        }
    }

    /**
     * Registers the sender as a DC, or updates its record. `publicKey` is the 64-byte X‖Y whose keccak hash ends in
     * the sender's address (so nobody publishes a key for an account it does not hold); `record` is opaque here.
     */
    function registerDc(bytes calldata publicKey, bytes calldata record) external {
        Dc storage d = dcs[msg.sender];
        d.publicKey = _senderKey(publicKey);
        if (d.updatedAt == 0) dcList.push(msg.sender);
        d.record = record;
        d.updatedAt = uint64(block.number);
        emit DcRecord(msg.sender, d.publicKey, record);
    }

    /**
     * Announces the sender as a Relay Server of the registered DC `dcId`, or updates its announcement (another DC, new
     * endpoints). `publicKey` as for registerDc; `record` is opaque here (the DC verifies its signature).
     */
    function announceRelay(bytes calldata publicKey, address dcId, bytes calldata record) external {
        bytes memory key = _senderKey(publicKey);
        if (dcs[dcId].updatedAt == 0) revert UnknownDc(dcId);
        Relay storage r = relays[msg.sender];
        // Moving to another DC: the old one sees it withdrawn, as if it had left.
        if (relayIndex[msg.sender] != 0 && r.dc != dcId) emit RelayWithdrawn(msg.sender, r.dc);
        if (relayIndex[msg.sender] == 0) {
            relayList.push(msg.sender);
            relayIndex[msg.sender] = relayList.length;
        }
        r.dc = dcId;
        r.publicKey = key;
        r.record = record;
        r.updatedAt = uint64(block.number);
        emit RelayRecord(msg.sender, dcId, key, record);
    }

    /** The sender stops relaying (drained, retired, shut down): its DC no longer routes through it. */
    function withdrawRelay() external {
        uint256 i = relayIndex[msg.sender];
        if (i == 0) revert NotARelay(msg.sender);
        address last = relayList[relayList.length - 1];
        relayList[i - 1] = last;
        relayIndex[last] = i;
        relayList.pop();
        delete relayIndex[msg.sender];
        address dcId = relays[msg.sender].dc;
        delete relays[msg.sender];
        emit RelayWithdrawn(msg.sender, dcId);
    }

    /** Claims exactly this block; reverts if it overlaps any claimed block (another DC's or the sender's own). */
    function claimBlock(uint8 family, uint128 base, uint8 len) external onlyDc {
        _checkBlock(family, base, len);
        address holder = _overlapping(family, base, len);
        if (holder != address(0)) revert BlockOverlaps(family, base, len, holder);
        _claim(family, base, len);
    }

    /**
     * Claims the first free /len block of the range (rangeBase/rangeLen), trying block `start`, start + 1, … (mod the
     * number of blocks), at most `tries` of them. DCs that start at once each get a disjoint block: transactions run
     * one after another, and each sees the claims before it.
     */
    function claimFreeBlock(uint8 family, uint128 rangeBase, uint8 rangeLen, uint8 len, uint256 start, uint256 tries)
        external
        onlyDc
        returns (uint128 base)
    {
        _checkBlock(family, rangeBase, rangeLen);
        if (len < rangeLen || len > (family == 4 ? 32 : 128) || len - rangeLen > 64) revert BadBlock(family, rangeBase, len);
        uint256 count = uint256(1) << (len - rangeLen);
        uint256 width = family == 4 ? 32 : 128;
        for (uint256 k = 0; k < tries && k < count; k++) {
            uint256 index = (start + k) % count;
            base = rangeBase | uint128(index << (width - len));
            if (_overlapping(family, base, len) == address(0)) {
                _claim(family, base, len);
                return base;
            }
        }
        revert NoFreeBlock();
    }

    // ---------------------------------------------------------------------------------------------------------
    // Reads.

    function terminal(address id) external view returns (address managingDc, uint64 timestamp, bool revoked) {
        Terminal storage t = terminals[id];
        return (t.dc, t.timestamp, t.revoked);
    }

    function dc(address id) external view returns (bytes memory publicKey, bytes memory record, uint64 updatedAt) {
        Dc storage d = dcs[id];
        return (d.publicKey, d.record, d.updatedAt);
    }

    function dcCount() external view returns (uint256) {
        return dcList.length;
    }

    function dcAt(uint256 i) external view returns (address) {
        return dcList[i];
    }

    function relay(address id) external view returns (address servedDc, bytes memory publicKey, bytes memory record, uint64 updatedAt) {
        Relay storage r = relays[id];
        return (r.dc, r.publicKey, r.record, r.updatedAt);
    }

    function relayCount() external view returns (uint256) {
        return relayList.length;
    }

    function relayAt(uint256 i) external view returns (address) {
        return relayList[i];
    }

    function blockCount() external view returns (uint256) {
        return blocks.length;
    }

    function blockAt(uint256 i) external view returns (address holder, uint8 family, uint128 base, uint8 len) {
        AddressBlock storage b = blocks[i];
        return (b.dc, b.family, b.base, b.len);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Internals.

    /**
     * The sender's 33-byte compressed key from its 64-byte X‖Y, whose keccak hash must end in the sender's address (so
     * nobody publishes a key, or announces a server, for an account it does not hold).
     */
    function _senderKey(bytes calldata publicKey) internal view returns (bytes memory) {
        if (publicKey.length != 64 || address(uint160(uint256(keccak256(publicKey)))) != msg.sender) revert BadPublicKey();
        uint8 prefix = uint8(publicKey[63]) & 1 == 1 ? 0x03 : 0x02;
        return abi.encodePacked(prefix, publicKey[0:32]);
    }

    /** The checks of NodeTransaction.check() (agent/src/protocol/node-transaction.ts), then the ledger's own rules. */
    function _record(bytes calldata nt) internal returns (Status) {
        uint8 prefix = uint8(nt[21]);
        if (uint8(nt[0]) != 1 || (prefix != 0x02 && prefix != 0x03) || uint8(nt[74]) > 1) return Status.Malformed;
        address id = address(bytes20(nt[1:21]));
        if (!_signedBy(nt, id)) return Status.Signature;
        if (!_keyOf(prefix, uint256(bytes32(nt[22:54])), id)) return Status.PublicKey;
        address managing = address(bytes20(nt[54:74]));
        if (managing != msg.sender) return Status.WrongDc;
        bool rev = nt[74] == 0x01;
        uint64 ts = uint64(bytes8(nt[75:83]));
        Terminal storage t = terminals[id];
        if (t.timestamp == ts && t.dc == managing && t.revoked == rev) return Status.Duplicate;
        if (t.revoked) return Status.Revoked;
        if (ts <= t.timestamp) return Status.Stale;
        t.dc = managing;
        t.timestamp = ts;
        t.revoked = rev;
        emit NodeTransaction(id, managing, ts, rev, nt);
        return Status.Accepted;
    }

    /** keccak256(tag ‖ bytes 0..83) signed by `id`: low-s, v ∈ {27, 28}, and a recovery that is not the zero address. */
    function _signedBy(bytes calldata nt, address id) internal pure returns (bool) {
        bytes32 r = bytes32(nt[83:115]);
        uint256 s = uint256(bytes32(nt[115:147]));
        uint8 v = uint8(nt[147]);
        if (s > HALF_N || (v != 27 && v != 28)) return false;
        bytes32 digest;
        // The digest over scratch memory past the free pointer, which is not advanced: a batch of hundreds must
        // not grow memory (and its quadratic cost) per entry.
        assembly {
            let p := mload(0x40)
            mstore(p, NT_TAG)
            calldatacopy(add(p, 21), nt.offset, NT_SIGNED_LENGTH)
            digest := keccak256(p, 104)
        }
        address signer = ecrecover(digest, v, r, bytes32(s));
        return signer != address(0) && signer == id;
    }

    /** Whether the compressed key (prefix, x) is a curve point whose ID is `id` (y by the modexp precompile). */
    function _keyOf(uint8 prefix, uint256 x, address id) internal view returns (bool) {
        if (x >= P) return false;
        uint256 y2 = addmod(mulmod(mulmod(x, x, P), x, P), 7, P);
        uint256 y;
        bool ok;
        assembly {
            let p := mload(0x40)
            mstore(p, 32)
            mstore(add(p, 32), 32)
            mstore(add(p, 64), 32)
            mstore(add(p, 96), y2)
            mstore(add(p, 128), SQRT_EXP)
            mstore(add(p, 160), P)
            ok := staticcall(gas(), 0x05, p, 192, p, 32)
            y := mload(p)
        }
        if (!ok || mulmod(y, y, P) != y2) return false;
        if (y & 1 != prefix & 1) y = P - y;
        bytes32 h;
        assembly {
            let p := mload(0x40)
            mstore(p, x)
            mstore(add(p, 32), y)
            h := keccak256(p, 64)
        }
        return address(uint160(uint256(h))) == id;
    }

    function _checkBlock(uint8 family, uint128 base, uint8 len) internal pure {
        uint256 width = family == 4 ? 32 : family == 6 ? 128 : 0;
        if (width == 0 || len > width || uint256(base) >> width != 0) revert BadBlock(family, base, len);
        // No bits below the prefix: one block, one spelling.
        if (len < width && uint256(base) & ((uint256(1) << (width - len)) - 1) != 0) revert BadBlock(family, base, len);
    }

    /** The holder of a claimed block that shares an address with (family, base, len), or the zero address. */
    function _overlapping(uint8 family, uint128 base, uint8 len) internal view returns (address) {
        uint256 width = family == 4 ? 32 : 128;
        for (uint256 i = 0; i < blocks.length; i++) {
            AddressBlock storage b = blocks[i];
            if (b.family != family) continue;
            // Two prefixes overlap exactly when the shorter one is a prefix of the longer one.
            uint256 shift = width - (b.len < len ? b.len : len);
            if (uint256(b.base) >> shift == uint256(base) >> shift) return b.dc;
        }
        return address(0);
    }

    function _claim(uint8 family, uint128 base, uint8 len) internal {
        blocks.push(AddressBlock({dc: msg.sender, family: family, len: len, base: base}));
        emit BlockClaimed(msg.sender, family, base, len);
    }
}
