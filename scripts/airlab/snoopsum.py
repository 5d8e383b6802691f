#!/usr/bin/python3
"""Summarise a btmon -w (btsnoop 'monitor' format, type 2001) capture:
counts of the LE HCI commands / LE meta events that matter, and of the ATT
(GATT) operations sent by each controller, per controller; then, for each
connection in which a central wrote an airhop invitation, the ATT
request/response exchanges it made on airhop's characteristics between
connecting and the first notification of the sealed reply.
(btmon 5.66 -r segfaults on these captures while decoding ATT, hence this.)

  snoopsum.py CAPTURE [--exchanges N]

With --exchanges N, exits 1 unless the capture holds at least one rendezvous
and every rendezvous took exactly N exchanges.

It also follows airhop's adverts: what each advertising controller put on
the air (its LE Set (Extended) Advertising Data commands) and what the
other controllers heard (advertising reports: address and identifier).
With --rotation, exits 1 unless the advertised identifier changed after
every invitation; with --unlinkable, also unless no address was heard
carrying two identifiers (which would let a stranger link them); with
--le-only, also unless no controller was asked for a BR/EDR inquiry
(airhop discovers over LE alone)."""
import struct, sys, collections, uuid

CMDS = {0x2006: 'LE Set Adv Params (legacy)', 0x200a: 'LE Set Adv Enable (legacy)',
        0x200b: 'LE Set Scan Params (legacy)', 0x200c: 'LE Set Scan Enable (legacy)',
        0x200d: 'LE Create Conn (legacy)', 0x2036: 'LE Set Ext Adv Params',
        0x2039: 'LE Set Ext Adv Enable', 0x2041: 'LE Set Ext Scan Params',
        0x2042: 'LE Set Ext Scan Enable', 0x2043: 'LE Ext Create Conn',
        0x2037: 'LE Set Ext Adv Data', 0x2008: 'LE Set Adv Data (legacy)',
        0x0401: 'Inquiry (BR/EDR)', 0x0402: 'Inquiry Cancel (BR/EDR)'}
ATT = {0x02: 'Exchange MTU Req', 0x03: 'Exchange MTU Rsp', 0x01: 'Error Rsp',
       0x08: 'Read By Type Req', 0x10: 'Read By Group Type Req', 0x04: 'Find Info Req',
       0x0a: 'Read Req', 0x0b: 'Read Rsp', 0x0c: 'Read Blob Req', 0x12: 'Write Req',
       0x13: 'Write Rsp', 0x16: 'Prepare Write Req', 0x18: 'Execute Write Req',
       0x1b: 'Handle Value Notification', 0x1d: 'Handle Value Indication',
       0x1e: 'Handle Value Confirmation', 0x23: 'Multiple Handle Value Notification',
       0x52: 'Write Cmd'}
SUBEV = {0x01: 'LE Connection Complete', 0x02: 'LE Advertising Report',
         0x0a: 'LE Enhanced Connection Complete', 0x0d: 'LE Extended Advertising Report',
         0x03: 'LE Connection Update Complete'}

# airhop's GATT service and characteristics (src/discovery/ble/mod.rs).
SUFFIX = '-6491-4731-9f92-1ff720827c07'
CARD, INVITE, REPLY = (uuid.UUID(p + SUFFIX) for p in ('bf5f786f', 'bf5f7870', 'bf5f7871'))
# ATT requests that take a round trip; Write Cmd (0x52) does not.
REQUESTS = {0x0a: 'read', 0x0c: 'read blob', 0x12: 'write', 0x16: 'prepare write',
            0x18: 'execute write'}


class Conn:
    """One LE connection as its central saw it."""
    def __init__(self, idx, handle, ts):
        self.idx, self.handle, self.t0 = idx, handle, ts
        self.frag = {}              # dir -> [L2CAP frame length, bytes so far]
        self.eatt = set()           # CIDs of its Enhanced ATT bearers
        self.sdu = {}               # (dir, CID) -> [SDU length, bytes so far]
        self.ops = []               # (ts, dir, att pdu)


def rendezvous(conns):
    """Per connection that wrote an invitation: the exchanges on airhop's
    handles until the first reply notification. Handles are learnt from the
    discovery replies, in this connection or an earlier one of the same
    controller (BlueZ may reuse its cache of the peer's database)."""
    known = {}                      # controller -> {name: handle}
    out = []
    for c in conns:
        h = dict(known.get(c.idx, {}))
        cccd_after = None
        for ts, d, pdu in c.ops:
            if d == 'rx' and pdu[0] == 0x09 and len(pdu) >= 2 and pdu[1] == 21:
                for i in range(2, len(pdu) - 20, 21):
                    e = pdu[i:i + 21]
                    u = uuid.UUID(bytes=bytes(reversed(e[5:21])))
                    for name, want in (('card', CARD), ('invite', INVITE), ('reply', REPLY)):
                        if u == want:
                            h[name] = struct.unpack('<H', e[3:5])[0]
                            h.pop('cccd', None)
            elif d == 'rx' and pdu[0] == 0x05 and len(pdu) >= 2 and pdu[1] == 1:
                for i in range(2, len(pdu) - 3, 4):
                    at, u16 = struct.unpack('<HH', pdu[i:i + 4])
                    if u16 == 0x2902 and 'reply' in h and at > h['reply'] and 'cccd' not in h:
                        h['cccd'] = at
        known[c.idx] = h
        if not {'card', 'invite', 'reply'} <= h.keys():
            continue
        # With its cache current, BlueZ skips the descriptor discovery; its
        # GATT server puts a CCCD right after the value it belongs to.
        h.setdefault('cccd', h['reply'] + 1)
        names = {h['card']: 'card', h['invite']: 'invite', h['cccd']: 'reply CCCD'}
        steps, invited, cmd, t_reply, prepared = [], False, False, None, False
        notice = False
        for ts, d, pdu in c.ops:
            op = pdu[0]
            if d == 'tx' and op in REQUESTS:
                at = struct.unpack('<H', pdu[1:3])[0] if op != 0x18 and len(pdu) >= 3 else None
                if at == h['cccd'] and op == 0x12 and pdu[3:] == b'\0\0':
                    break           # unsubscribed: the central gave up waiting
                # An abandon notice, not an invitation: a write to the
                # invite handle whose first segment's message starts 0x41
                # (segment: txn, seq 0, u16 length, then the message).
                if at == h['invite'] and op == 0x12 and not invited and len(pdu) > 7 \
                        and pdu[4] == 0 and pdu[7] == 0x41:
                    notice = True
                if at in names or (op == 0x18 and prepared):
                    steps.append('%s %s' % (REQUESTS[op], names.get(at, 'invite')))
                    invited |= names.get(at) == 'invite'
                    prepared |= op == 0x16 and at in names
            elif d == 'tx' and op == 0x52 and len(pdu) >= 3 \
                    and struct.unpack('<H', pdu[1:3])[0] == h['invite']:
                invited = cmd = True
                notice |= len(pdu) > 7 and pdu[4] == 0 and pdu[7] == 0x41
                steps.append('command invite')
            # A notification, or a Multiple Handle Value Notification (EATT),
            # whose first handle is the reply's.
            elif d == 'rx' and op in (0x1b, 0x23) and len(pdu) >= 3 and invited \
                    and struct.unpack('<H', pdu[1:3])[0] == h['reply']:
                t_reply = ts
                break
        if invited:
            n = sum(1 for s in steps if not s.startswith('command'))
            out.append((c, n, steps, t_reply, notice))
    return out


SVC_DATA = b'\x21' + uuid.UUID('bf5f786e' + SUFFIX).bytes[::-1]


def airhop_payload(ad):
    """The 10-byte airhop payload in advertising data, or None."""
    i = ad.find(SVC_DATA)
    if i < 1 or len(ad) < i + len(SVC_DATA) + 10:
        return None
    return bytes(ad[i + len(SVC_DATA):i + len(SVC_DATA) + 10])


def adverts(advertised, periph, heard, found, want_rotation, want_unlinkable):
    """Did the identifier change after every invitation; could a stranger
    link two identifiers through the address they came from?"""
    ok = True
    by_idx = collections.defaultdict(list)
    for ts, idx, pl in advertised:
        by_idx[idx].append((ts, pl[1:4]))
    invited = [conn.t0 for conn, _, _, t_reply in found if t_reply]
    for idx, seq in sorted(by_idx.items()):
        ids = {p for _, p in seq}
        if len(ids) < 2:
            continue                # a fixed payload: not an airhop device
        def at(t):
            before = [p for ts, p in seq if ts < t]
            return before[-1] if before else None
        # A peripheral connection of this controller that an invitation went
        # through (the central connected within 100 ms).
        conns = [t for t in periph.get(idx, [])
                 if any(abs(t - c) < 100000 for c in invited)]
        changed = [at(a) != at(b) for a, b in zip(conns, conns[1:]) if at(a)]
        if not conns:
            continue                # no invitation came in through it
        print('hci%d advertised %d identifiers; across %d invitations it changed '
              'after %d of %d' % (idx, len(ids), len(conns), sum(changed), len(changed)))
        if want_rotation and (not changed or not all(changed)):
            print('FAIL: the identifier did not change after every invitation')
            ok = False
        addrs = collections.defaultdict(set)
        for ts, scanner, addr, pl in heard:
            if scanner != idx and pl[1:4] in ids:
                addrs[addr].add(pl[1:4])
        linked = [a for a, p in addrs.items() if len(p) > 1]
        on_air = set().union(*addrs.values()) if addrs else set()
        print('hci%d heard by the others: %d identifiers from %d addresses; %d '
              'address(es) carried two identifiers or more' % (
                  idx, len(on_air), len(addrs), len(linked)))
        if want_rotation and len(on_air) < len(changed) + 1:
            print('FAIL: the others heard fewer identifiers than invitations')
            ok = False
        if want_unlinkable and (not addrs or linked):
            print('FAIL: a stranger can link identifiers by address: %s' % ', '.join(
                ':'.join('%02x' % b for b in reversed(a)) for a in linked))
            ok = False
    return ok


def main(path, want=None, want_rotation=False, want_unlinkable=False, want_le_only=False):
    f = open(path, 'rb')
    hdr = f.read(16)
    assert hdr[:8] == b'btsnoop\0', 'not btsnoop'
    c = collections.Counter()
    ext_props = set()
    conns, live = [], {}            # every central-role connection; (idx, handle) -> Conn
    advertised, heard = [], []      # (ts, idx, payload); (ts, idx, address, payload)
    periph = collections.defaultdict(list)  # idx -> times it was connected to
    while True:
        rec = f.read(24)
        if len(rec) < 24:
            break
        olen, ilen, flags, drops, ts = struct.unpack('>IIIIq', rec)
        data = f.read(ilen)
        idx, op = flags >> 16, flags & 0xffff
        if op == 2 and len(data) >= 3:              # HCI command
            opc = struct.unpack('<H', data[:2])[0]
            if opc in CMDS:
                c[('hci%d' % idx, 'CMD', CMDS[opc])] += 1
            ad = data[4:4 + data[3]] if opc == 0x2008 else data[7:7 + data[6]] \
                if opc == 0x2037 and len(data) >= 7 else b''
            pl = airhop_payload(ad)
            if pl:
                advertised.append((ts, idx, pl))
            if opc == 0x2036 and len(data) >= 6:
                ext_props.add(('hci%d' % idx, struct.unpack('<H', data[4:6])[0]))
        elif op == 3 and len(data) >= 3 and data[0] == 0x3e:   # LE meta event
            sub = data[2]
            if sub in SUBEV:
                c[('hci%d' % idx, 'EVT', SUBEV[sub])] += 1
            # One report each (BlueZ's emulated controllers send one at a time).
            if sub == 0x02 and len(data) >= 13:
                pl = airhop_payload(data[13:13 + data[12]])
                if pl:
                    heard.append((ts, idx, data[6:12], pl))
            elif sub == 0x0d and len(data) >= 28:
                pl = airhop_payload(data[28:28 + data[27]])
                if pl:
                    heard.append((ts, idx, data[7:13], pl))
            if sub in (0x01, 0x0a) and len(data) >= 7 and data[3] == 0 and data[6] == 1:
                periph[idx].append(ts)
            # Connection Complete: status, handle, role (0 = central).
            if sub in (0x01, 0x0a) and len(data) >= 7 and data[3] == 0 and data[6] == 0:
                conn = Conn(idx, struct.unpack('<H', data[4:6])[0] & 0xfff, ts)
                conns.append(conn)
                live[(idx, conn.handle)] = conn
        elif op == 3 and len(data) >= 5 and data[0] == 0x05:  # Disconnection Complete
            live.pop((idx, struct.unpack('<H', data[3:5])[0] & 0xfff), None)
        elif op in (4, 5):
            c[('hci%d' % idx, 'ACL', 'tx' if op == 4 else 'rx')] += 1
            # ACL header (handle+flags, length), L2CAP (length, CID 4 = ATT).
            if op == 4 and len(data) >= 9 and (data[1] >> 4) & 0x3 != 0x1:
                cid = struct.unpack('<H', data[6:8])[0]
                if cid == 4 and data[8] in ATT:
                    c[('hci%d' % idx, 'ATT', 'sent ' + ATT[data[8]])] += 1
            conn = live.get((idx, struct.unpack('<H', data[:2])[0] & 0xfff)) \
                if len(data) >= 4 else None
            if conn is not None:
                acl(conn, 'tx' if op == 4 else 'rx', ts, data)
    for k in sorted(c):
        print('%-5s %-3s %-34s %d' % (k[0], k[1], k[2], c[k]))
    for idx, p in sorted(ext_props):
        print('%s ext adv properties 0x%04x -> %s' % (idx, p,
              'LEGACY PDU' if p & 0x10 else 'EXTENDED (non-legacy) PDU'))

    every = rendezvous(conns)
    for conn, n, steps, t_reply, notice in every:
        if notice:
            took = '%.0f ms to the answer' % ((t_reply - conn.t0) / 1000) if t_reply else 'no answer'
            print('hci%d abandon notice: %d exchanges (%s), %s' % (
                conn.idx, n, ', '.join(steps), took))
    found = [(c, n, st, t) for c, n, st, t, notice in every if not notice]
    for i, (conn, n, steps, t_reply) in enumerate(found, 1):
        took = '%.0f ms to the reply' % ((t_reply - conn.t0) / 1000) if t_reply else 'no reply'
        print('hci%d rendezvous %d: %d exchanges (%s), %s' % (
            conn.idx, i, n, ', '.join(steps), took))
    inquiries = sum(n for k, n in c.items() if k[2] == 'Inquiry (BR/EDR)')
    if want_le_only:
        if inquiries:
            print('FAIL: %d BR/EDR inquiries; discovery should be LE alone' % inquiries)
            return 1
        print('ok: no BR/EDR inquiry (LE-only discovery)')
    if want is not None:
        bad = [n for _, n, _, _ in found if n != want]
        if not found or bad:
            print('FAIL: %d rendezvous, want each to take %d exchanges; took %s' % (
                len(found), want, [n for _, n, _, _ in found]))
            return 1
        print('ok: %d rendezvous, each %d exchanges' % (len(found), want))
    return 0 if adverts(advertised, periph, heard, found, want_rotation, want_unlinkable) else 1


def acl(conn, d, ts, data):
    """Reassembles one direction's L2CAP frames of a connection and keeps its
    ATT PDUs: on the fixed ATT channel (CID 4) and on Enhanced ATT bearers
    (LE credit-based channels to PSM 0x27, which BlueZ opens when both sides
    support EATT; there each ATT PDU is an SDU, maybe split over K-frames)."""
    pb = (data[1] >> 4) & 0x3
    body = data[4:]
    if pb != 0x1:                   # a first fragment: L2CAP length, CID
        if len(body) < 4:
            return
        conn.frag[d] = [struct.unpack('<H', body[:2])[0] + 4, bytearray(body)]
    elif d in conn.frag:
        conn.frag[d][1] += body
    else:
        return
    need, buf = conn.frag[d]
    if len(buf) < need:
        return
    del conn.frag[d]
    cid, pdu = struct.unpack('<H', buf[2:4])[0], bytes(buf[4:need])
    if cid == 4 and pdu:
        conn.ops.append((ts, d, pdu))
    elif cid == 5 and len(pdu) >= 10 and pdu[0] == 0x14 \
            and struct.unpack('<H', pdu[4:6])[0] == 0x27:
        conn.eatt.add(struct.unpack('<H', pdu[6:8])[0])       # its source CID
    elif cid == 5 and len(pdu) >= 6 and pdu[0] == 0x15:
        conn.eatt.add(struct.unpack('<H', pdu[4:6])[0])       # its destination CID
    elif cid in conn.eatt:
        sdu = conn.sdu.get((d, cid))
        if sdu is None:
            if len(pdu) < 2:
                return
            sdu = conn.sdu[(d, cid)] = [struct.unpack('<H', pdu[:2])[0], bytearray(pdu[2:])]
        else:
            sdu[1] += pdu
        if len(sdu[1]) >= sdu[0]:
            del conn.sdu[(d, cid)]
            if sdu[0]:
                conn.ops.append((ts, d, bytes(sdu[1][:sdu[0]])))


args = sys.argv[1:]
want = None
if '--exchanges' in args:
    i = args.index('--exchanges')
    want = int(args[i + 1])
    del args[i:i + 2]
flags = {a for a in args if a in ('--rotation', '--unlinkable', '--le-only')}
args = [a for a in args if a not in flags]
sys.exit(main(args[0], want, '--rotation' in flags, '--unlinkable' in flags,
              '--le-only' in flags))
