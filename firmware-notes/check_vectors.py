#!/usr/bin/env python3
"""Recomputes the advert and key-schedule vectors of vectors.txt from the
text of README.md alone, with Python's standard library: a second,
independent implementation of what a firmware must compute. Exits non-zero
on the first mismatch. (ChaCha20-Poly1305 is not in the standard library;
the Rust test checks the reply.* vectors.)"""
import hashlib, hmac, os, sys

here = os.path.dirname(os.path.abspath(__file__))
v = {}
for line in open(os.path.join(here, 'vectors.txt')):
    if '=' in line and not line.startswith('#'):
        k, val = line.split('=', 1)
        v[k.strip()] = val.strip()

def check(name, got):
    if v[name] != got:
        sys.exit('%s: vectors.txt says %s, this text gives %s' % (name, v[name], got))
    print('ok', name, got)

def sha(*parts): return hashlib.sha256(b''.join(parts)).digest()

# 1. The advert.
key = bytes.fromhex(v['advert.resolving_key'])
prand = bytes.fromhex(v['advert.prand'])
card = bytes((i * 3) % 256 for i in range(200))
caps = int(v['advert.caps'], 16)
tag = hmac.new(key, b'airhop/1 rid' + prand, hashlib.sha256).digest()[:3]
svc = sha(b'airhop/1 svc', prand, b'airhop')[:1]
ch = sha(b'airhop/1 card', prand, card)[:2]
check('advert.rid_tag', tag.hex())
check('advert.service_hash', svc.hex())
check('advert.card_hash', ch.hex())
payload = bytes([0x10 | caps]) + prand + tag + svc + ch
check('advert.payload', payload.hex())
uuid_le = bytes.fromhex('bf5f786e64914731 9f921ff720827c07'.replace(' ', ''))[::-1]
ad = bytes([2, 0x01, 0x06, 1 + 16 + len(payload), 0x21]) + uuid_le + payload
check('advert.advertising_data', ad.hex())

# 2. The key schedule (HKDF-SHA256 by hand, RFC 5869).
shared = bytes.fromhex(v['keys.shared'])
card_r, card_i = b'\x01' * 40, b'\x02' * 40
nonce = bytes.fromhex(v['keys.nonce'])
invitation = b'\x04' * 60
lp = lambda b: len(b).to_bytes(2, 'big') + b
prk = hmac.new(b'airhop/1 handshake', shared, hashlib.sha256).digest()
def expand(info, n):
    out, t, i = b'', b'', 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + t, i + 1
    return out[:n]
th_ctx = sha(b'airhop/1 ctx', lp(card_r), lp(card_i), nonce)
th = sha(b'airhop/1 transcript', lp(card_r), lp(invitation))
check('keys.k_ctx', expand(b'airhop/1 context key' + th_ctx, 32).hex())
check('keys.k_reply', expand(b'airhop/1 reply key' + th, 32).hex())
code = int.from_bytes(expand(b'airhop/1 pairing code' + th, 8), 'big') % 1000000
check('keys.pairing_code', '%06d' % code)

# 3. The segments of the reply message over an MTU of 23.
msg = bytes.fromhex(v['reply.message'])
whole = len(msg).to_bytes(2, 'little') + msg
segs = [bytes([0x5a, i]) + whole[o:o + 18] for i, o in enumerate(range(0, len(whole), 18))]
for i, s in enumerate(segs):
    check('segments.txn5a_mtu23.%d' % i, s.hex())
print('all vectors agree')
