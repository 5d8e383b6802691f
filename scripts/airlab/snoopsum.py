#!/usr/bin/python3
"""Summarise a btmon -w (btsnoop 'monitor' format, type 2001) capture:
counts of the LE HCI commands / LE meta events that matter, and of the ATT
(GATT) operations sent by each controller, per controller.
(btmon 5.66 -r segfaults on these captures while decoding ATT, hence this.)"""
import struct, sys, collections

CMDS = {0x2006: 'LE Set Adv Params (legacy)', 0x200a: 'LE Set Adv Enable (legacy)',
        0x200b: 'LE Set Scan Params (legacy)', 0x200c: 'LE Set Scan Enable (legacy)',
        0x200d: 'LE Create Conn (legacy)', 0x2036: 'LE Set Ext Adv Params',
        0x2039: 'LE Set Ext Adv Enable', 0x2041: 'LE Set Ext Scan Params',
        0x2042: 'LE Set Ext Scan Enable', 0x2043: 'LE Ext Create Conn',
        0x2037: 'LE Set Ext Adv Data', 0x2008: 'LE Set Adv Data (legacy)'}
ATT = {0x02: 'Exchange MTU Req', 0x03: 'Exchange MTU Rsp', 0x01: 'Error Rsp',
       0x08: 'Read By Type Req', 0x10: 'Read By Group Type Req', 0x04: 'Find Info Req',
       0x0a: 'Read Req', 0x0b: 'Read Rsp', 0x0c: 'Read Blob Req', 0x12: 'Write Req',
       0x13: 'Write Rsp', 0x16: 'Prepare Write Req', 0x18: 'Execute Write Req',
       0x1b: 'Handle Value Notification', 0x1d: 'Handle Value Indication',
       0x1e: 'Handle Value Confirmation', 0x52: 'Write Cmd'}
SUBEV = {0x01: 'LE Connection Complete', 0x02: 'LE Advertising Report',
         0x0a: 'LE Enhanced Connection Complete', 0x0d: 'LE Extended Advertising Report',
         0x03: 'LE Connection Update Complete'}

def main(path):
    f = open(path, 'rb')
    hdr = f.read(16)
    assert hdr[:8] == b'btsnoop\0', 'not btsnoop'
    c = collections.Counter()
    ext_props = set()
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
            if opc == 0x2036 and len(data) >= 6:
                ext_props.add(('hci%d' % idx, struct.unpack('<H', data[4:6])[0]))
        elif op == 3 and len(data) >= 3 and data[0] == 0x3e:   # LE meta event
            sub = data[2]
            if sub in SUBEV:
                c[('hci%d' % idx, 'EVT', SUBEV[sub])] += 1
        elif op in (4, 5):
            c[('hci%d' % idx, 'ACL', 'tx' if op == 4 else 'rx')] += 1
            # ACL header (handle+flags, length), L2CAP (length, CID 4 = ATT).
            if op == 4 and len(data) >= 9 and (data[1] >> 4) & 0x3 != 0x1:
                cid = struct.unpack('<H', data[6:8])[0]
                if cid == 4 and data[8] in ATT:
                    c[('hci%d' % idx, 'ATT', 'sent ' + ATT[data[8]])] += 1
    for k in sorted(c):
        print('%-5s %-3s %-34s %d' % (k[0], k[1], k[2], c[k]))
    for idx, p in sorted(ext_props):
        print('%s ext adv properties 0x%04x -> %s' % (idx, p,
              'LEGACY PDU' if p & 0x10 else 'EXTENDED (non-legacy) PDU'))

main(sys.argv[1])
