// Recomputes, in the browser, each record's hash from its signed bytes and its RFC 9162 inclusion
// proof up to the checkpoint's root (read from the checkpoint note itself), then shows ✓ or ✗.
// SHA-256 comes from WebCrypto where the page is a secure context (loopback or HTTPS), else from
// the small implementation below, so a team server on plain HTTP can check proofs too.
"use strict";
(function () {
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

  function sha256Fallback(data) {
    const bitLen = data.length * 8;
    const padded = new Uint8Array(((data.length + 9 + 63) >> 6) << 6);
    padded.set(data);
    padded[data.length] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bitLen / 0x100000000));
    view.setUint32(padded.length - 4, bitLen >>> 0);
    const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    const w = new Uint32Array(64);
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let off = 0; off < padded.length; off += 64) {
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
      for (let i = 16; i < 64; i++) {
        const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, hh] = h;
      for (let i = 0; i < 64; i++) {
        const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    const out = new Uint8Array(32);
    const ov = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) ov.setUint32(i * 4, h[i]);
    return out;
  }

  async function sha256(data) {
    if (window.crypto && window.crypto.subtle && window.isSecureContext) {
      return new Uint8Array(await window.crypto.subtle.digest("SHA-256", data));
    }
    return sha256Fallback(data);
  }

  const hexToBytes = (hex) => new Uint8Array((hex.match(/../g) || []).map((b) => parseInt(b, 16)));
  const bytesToHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  // RFC 9162 §2.1.3.2, with arithmetic instead of 32-bit bit operations (sizes beyond 2^31).
  async function rootFromInclusion(index, size, leaf, proof) {
    if (index < 0 || index >= size) throw new Error("leaf index outside the tree");
    let fn = index, sn = size - 1, r = leaf;
    for (const p of proof) {
      if (sn === 0) throw new Error("proof longer than the tree is deep");
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(concat([1], p, r));
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      } else {
        r = await sha256(concat([1], r, p));
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    if (sn !== 0) throw new Error("proof shorter than the tree is deep");
    return r;
  }

  function b64ToBytes(text) {
    const raw = atob(text);
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  // The tree head the proof must reach: from the signed checkpoint note's body when there is one.
  function target(p) {
    if (p.checkpoint && p.checkpoint.note) {
      const lines = p.checkpoint.note.split("\n");
      return { size: Number(lines[1]), root: b64ToBytes(lines[2]), label: "checkpoint of size " + lines[1] };
    }
    return { size: p.tree_size, root: hexToBytes(p.root), label: "verified tree head of size " + p.tree_size };
  }

  async function check(p) {
    if (!p.available) return { ok: null, text: "— " + p.reason };
    const body = new TextEncoder().encode(p.body);
    const recordHash = await sha256(concat(hexToBytes(p.domain_tag_hex), hexToBytes(p.prev_hash), body));
    if (bytesToHex(recordHash) !== p.record_hash) {
      return { ok: false, text: "✗ the record's bytes do not hash to its stored hash" };
    }
    const t = target(p);
    if (t.size !== p.tree_size) return { ok: false, text: "✗ the proof is for another tree size than the checkpoint" };
    const leaf = await sha256(concat([0], recordHash));
    const proof = p.proof.map(hexToBytes);
    let root;
    try { root = await rootFromInclusion(p.leaf_index, p.tree_size, leaf, proof); } catch (e) {
      return { ok: false, text: "✗ " + e.message };
    }
    if (!equal(root, t.root)) return { ok: false, text: "✗ the proof does not lead to the " + t.label };
    return { ok: true, text: "✓ in the " + t.label };
  }

  async function checkCell(cell) {
    const seq = cell.getAttribute("data-proof-seq");
    try {
      const resp = await fetch("/api/ledger/" + encodeURIComponent(seq) + "/proof", { credentials: "same-origin" });
      if (!resp.ok) throw new Error("proof not available (HTTP " + resp.status + ")");
      const result = await check(await resp.json());
      cell.textContent = result.text;
      cell.classList.add(result.ok === true ? "ok" : result.ok === false ? "bad" : "muted");
      cell.setAttribute("data-proof-result", result.ok === true ? "ok" : result.ok === false ? "bad" : "none");
    } catch (e) {
      cell.textContent = "✗ " + e.message;
      cell.classList.add("bad");
      cell.setAttribute("data-proof-result", "bad");
    }
  }

  async function run() {
    const cells = Array.from(document.querySelectorAll("[data-proof-seq]"));
    const workers = Array.from({ length: 4 }, async () => {
      while (cells.length) await checkCell(cells.shift());
    });
    await Promise.all(workers);
    document.body.setAttribute("data-proofs-checked", "1");
  }

  document.addEventListener("DOMContentLoaded", () => {
    const banner = document.getElementById("banner");
    const refresh = banner && banner.getAttribute("data-refresh");
    if (refresh) setTimeout(() => window.location.reload(), Number(refresh));
    run();
  });
})();
