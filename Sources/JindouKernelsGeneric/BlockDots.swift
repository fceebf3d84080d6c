import JindouTensors

// Row kernels for every block-quantised weight format, as integer dot products with the
// activations in the format's activation blocks (ActivationBlocks.swift) — the
// arithmetic of ggml-cpu's `ggml_vec_dot_<type>_<activation>` (ggml-cpu/quants.c,
// the `_generic` functions), so the products equal llama.cpp's up to float summation order.
//
// Each format is one `BlockDot` type; `blockRows` runs one over a range of rows and every
// token. The scalar versions here are the reference every kernel set has; an instruction
// set's faster version of a format lives in its own file and is chosen in `Kernels`.
//
// Bytes read per row: `weight.rowBytes` (e.g. Q4_K 0.5625, IQ2_XXS 0.258 bytes per
// weight); the activations (~1.1 bytes per column and token) stay in cache.

/// Σ w·x of one row of a block format and one token's quantised activations.
protocol BlockDot {
    /// `blocks` weight blocks starting at `row` against `a` (the same columns).
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float
}

/// `y[t · outputStride + r] = Σ_c x[t, c] · W[r, c]` for `rows` and every token, with `D`'s dot.
@inline(__always)
func blockRows<D: BlockDot>(_: D.Type, _ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>,
                            y: UnsafeMutablePointer<Float>, outputStride: Int) {
    let blocks = weight.columns / weight.blockFormat!.blockSize
    for r in rows {
        let row = weight.rowPointer(r)
        // Later tokens read the row from L1.
        for t in 0..<a.tokens {
            y[t &* outputStride &+ r] = D.dot(row, a.row(t), blocks: blocks)
        }
    }
}

@inline(__always) private func u8(_ p: UnsafeRawPointer, _ i: Int) -> Int32 { Int32(p.load(fromByteOffset: i, as: UInt8.self)) }
@inline(__always) private func s8(_ p: UnsafePointer<Int8>, _ i: Int) -> Int32 { Int32(p[i]) }
@inline(__always) private func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    Float(halfBits: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
}

// MARK: - 32-weight formats with Q8_0 / Q8_1 activations

/// `ggml_vec_dot_q4_0_q8_0`: block_q4_0 = f16 d, 16 bytes of nibbles (low: weights 0–15,
/// high: 16–31), w = (q − 8)·d.
enum Q4_0Dot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0..<blocks {
            let p = row + 18 &* b, q = a.values + 32 &* b
            var s: Int32 = 0
            for j in 0..<16 {
                let v = u8(p, 2 &+ j)
                s &+= ((v & 0xF) &- 8) &* s8(q, j) &+ ((v >> 4) &- 8) &* s8(q, j &+ 16)
            }
            sum += Float(s) * (half(p, 0) * a.scales[b])
        }
        return sum
    }
}

/// `ggml_vec_dot_q4_1_q8_1`: block_q4_1 = f16 d, f16 m, 16 bytes of nibbles; w = q·d + m.
enum Q4_1Dot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0..<blocks {
            let p = row + 20 &* b, q = a.values + 32 &* b
            var s: Int32 = 0
            for j in 0..<16 {
                let v = u8(p, 4 &+ j)
                s &+= (v & 0xF) &* s8(q, j) &+ (v >> 4) &* s8(q, j &+ 16)
            }
            sum += (half(p, 0) * a.scales[b]) * Float(s) + half(p, 2) * a.sums[b]
        }
        return sum
    }
}

/// `ggml_vec_dot_q5_0_q8_0`: block_q5_0 = f16 d, 32 high bits, 16 bytes of nibbles;
/// w = (q − 16)·d.
enum Q5_0Dot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0..<blocks {
            let p = row + 22 &* b, q = a.values + 32 &* b
            let high = p.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
            var s: Int32 = 0
            for j in 0..<16 {
                let v = u8(p, 6 &+ j)
                let h0 = Int32((high >> UInt32(j)) & 1) << 4, h1 = Int32((high >> UInt32(j &+ 16)) & 1) << 4
                s &+= (((v & 0xF) | h0) &- 16) &* s8(q, j) &+ (((v >> 4) | h1) &- 16) &* s8(q, j &+ 16)
            }
            sum += (half(p, 0) * a.scales[b]) * Float(s)
        }
        return sum
    }
}

/// `ggml_vec_dot_q5_1_q8_1`: block_q5_1 = f16 d, f16 m, 32 high bits, 16 bytes of
/// nibbles; w = q·d + m.
enum Q5_1Dot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0..<blocks {
            let p = row + 24 &* b, q = a.values + 32 &* b
            let high = p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
            var s: Int32 = 0
            for j in 0..<16 {
                let v = u8(p, 8 &+ j)
                let h0 = Int32((high >> UInt32(j)) & 1) << 4, h1 = Int32((high >> UInt32(j &+ 16)) & 1) << 4
                s &+= ((v & 0xF) | h0) &* s8(q, j) &+ ((v >> 4) | h1) &* s8(q, j &+ 16)
            }
            sum += (half(p, 0) * a.scales[b]) * Float(s) + half(p, 2) * a.sums[b]
        }
        return sum
    }
}

/// `ggml_vec_dot_q8_0_q8_0`: block_q8_0 = f16 d, 32 × int8; w = q·d.
enum Q8_0Dot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        var sum: Float = 0
        for b in 0..<blocks {
            let p = row + 34 &* b, q = a.values + 32 &* b
            let w = (p + 2).assumingMemoryBound(to: Int8.self)
            var s: Int32 = 0
            for j in 0..<32 { s &+= s8(w, j) &* s8(q, j) }
            sum += Float(s) * (half(p, 0) * a.scales[b])
        }
        return sum
    }
}

/// `ggml_vec_dot_iq4_nl_q8_0`: block_iq4_nl = f16 d, 16 bytes of nibbles indexing
/// `kvalues_iq4nl`; w = kvalue·d.
enum IQ4_NLDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        let values = GGMLTables.kvaluesIQ4NL.base
        var sum: Float = 0
        for b in 0..<blocks {
            let p = row + 18 &* b, q = a.values + 32 &* b
            var s1: Int32 = 0, s2: Int32 = 0
            for j in 0..<16 {
                let v = Int(u8(p, 2 &+ j))
                s1 &+= s8(q, j) &* Int32(values[v & 0xF])
                s2 &+= s8(q, j &+ 16) &* Int32(values[v >> 4])
            }
            sum += (a.scales[b] * half(p, 0)) * Float(s1 &+ s2)
        }
        return sum
    }
}

/// `ggml_vec_dot_mxfp4_q8_0`: block_mxfp4 = E8M0 exponent e, 16 bytes of nibbles indexing
/// `kvalues_mxfp4` (E2M1 doubled); w = kvalue · 2^(e − 128).
enum MXFP4Dot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        let values = GGMLTables.kvaluesMXFP4.base
        var sum: Float = 0
        for b in 0..<blocks {
            let p = row + 17 &* b, q = a.values + 32 &* b
            let d = a.scales[b] * MXFP4.halfScale(p.load(as: UInt8.self))
            var s1: Int32 = 0, s2: Int32 = 0
            for j in 0..<16 {
                let v = Int(u8(p, 1 &+ j))
                s1 &+= s8(q, j) &* Int32(values[v & 0xF])
                s2 &+= s8(q, j &+ 16) &* Int32(values[v >> 4])
            }
            sum += d * Float(s1 &+ s2)
        }
        return sum
    }
}

// MARK: - 256-weight formats with Q8_K activations

/// The eight 6-bit scales and eight 6-bit mins of Q4_K/Q5_K (`utmp` with ggml's kmasks).
@inline(__always)
func kScalesAndMins(_ packed: UnsafeRawPointer) -> (scales: SIMD8<Int32>, mins: SIMD8<Int32>) {
    let u0 = packed.loadUnaligned(as: UInt32.self)
    let u1 = packed.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
    let u2 = packed.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
    let low6: UInt32 = 0x3F3F_3F3F, low4: UInt32 = 0x0F0F_0F0F, low2: UInt32 = 0x0303_0303
    let scales = UInt64(u0 & low6) | UInt64((u2 & low4) | (((u0 >> 6) & low2) << 4)) << 32
    let mins = UInt64(u1 & low6) | UInt64(((u2 >> 4) & low4) | (((u1 >> 6) & low2) << 4)) << 32
    @inline(__always) func widen(_ bytes: UInt64) -> SIMD8<Int32> {
        SIMD8<Int32>(truncatingIfNeeded: unsafeBitCast(bytes, to: SIMD8<UInt8>.self))
    }
    return (widen(scales), widen(mins))
}

/// Σ_j bsums[j] · m[j / 2] over a super-block (the `min` term of Q4_K/Q5_K).
@inline(__always)
private func minimumTerm(_ sums: UnsafePointer<Int16>, _ mins: SIMD8<Int32>) -> Int32 {
    var s: Int32 = 0
    for j in 0..<16 { s &+= Int32(sums[j]) &* mins[j >> 1] }
    return s
}

/// `ggml_vec_dot_q2_K_q8_K`: block_q2_K = 16 scale bytes (low nibble scale, high min),
/// 64 bytes of 2-bit quants, f16 d, f16 dmin; w = d·sc·q − dmin·m per 16.
enum Q2_KDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 84 &* i, q8 = a.values + 256 &* i, bs = a.blockSums + 16 &* i
            var summs: Int32 = 0
            for j in 0..<16 { summs &+= Int32(bs[j]) &* (u8(p, j) >> 4) }
            let dall = a.scales[i] * half(p, 80), dmin = a.scales[i] * half(p, 82)
            var isum: Int32 = 0
            var scale = 0, q = 0
            for k in 0..<2 {
                for shift in stride(from: 0, through: 6, by: 2) {
                    let quants = p + (16 &+ 32 &* k)
                    for half in 0..<2 {
                        let d = u8(p, scale) & 0xF
                        scale &+= 1
                        var s: Int32 = 0
                        for l in (16 &* half)..<(16 &* half &+ 16) { s &+= s8(q8, q &+ l) &* ((u8(quants, l) >> Int32(shift)) & 3) }
                        isum &+= d &* s
                    }
                    q &+= 32
                }
            }
            sum += dall * Float(isum) - dmin * Float(summs)
        }
        return sum
    }
}

/// `ggml_vec_dot_q3_K_q8_K`: block_q3_K = 32 bytes of high bits, 64 bytes of 2-bit quants,
/// 12 bytes of sixteen 6-bit scales, f16 d; w = d·(sc − 32)·(q − 4·!h) per 16.
enum Q3_KDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 110 &* i, q8 = a.values + 256 &* i
            let u0 = p.loadUnaligned(fromByteOffset: 96, as: UInt32.self)
            let u1 = p.loadUnaligned(fromByteOffset: 100, as: UInt32.self)
            let tmp = p.loadUnaligned(fromByteOffset: 104, as: UInt32.self)
            let m1: UInt32 = 0x0303_0303, m2: UInt32 = 0x0F0F_0F0F
            let words = [(u0 & m2) | (((tmp >> 0) & m1) << 4), (u1 & m2) | (((tmp >> 2) & m1) << 4),
                         ((u0 >> 4) & m2) | (((tmp >> 4) & m1) << 4), ((u1 >> 4) & m2) | (((tmp >> 6) & m1) << 4)]
            var isum: Int32 = 0
            for j in 0..<16 {
                let scale = Int32(Int8(truncatingIfNeeded: words[j >> 2] >> UInt32(8 &* (j & 3)))) &- 32
                // Weights 16j…16j+15: 128-chunk k, shift pair s, lanes l.
                let chunk = j >> 3, group = (j >> 1) & 3, lanes = 16 &* (j & 1)
                let mask = Int32(1) << Int32(4 &* chunk &+ group)
                var s: Int32 = 0
                for l in lanes..<(lanes &+ 16) {
                    let quant = (u8(p, 32 &+ 32 &* chunk &+ l) >> Int32(2 &* group)) & 3
                    let w = quant &- ((u8(p, l) & mask) != 0 ? 0 : 4)
                    s &+= w &* s8(q8, 16 &* j &+ l &- lanes)
                }
                isum &+= scale &* s
            }
            sum += (half(p, 108) * a.scales[i]) * Float(isum)
        }
        return sum
    }
}

/// `ggml_vec_dot_q4_K_q8_K`: block_q4_K = f16 d, f16 dmin, 12 bytes of eight 6-bit scales
/// and mins, 128 bytes of nibbles (per 64 weights: low nibbles the first 32, high the next);
/// w = d·sc·q − dmin·m per 32.
enum Q4_KDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 144 &* i, q8 = a.values + 256 &* i
            let (scales, mins) = kScalesAndMins(p + 4)
            var isum: Int32 = 0
            for j in 0..<8 {
                let quants = p + (16 &+ 32 &* (j >> 1)), shift = Int32(4 &* (j & 1))
                var s: Int32 = 0
                for l in 0..<32 { s &+= ((u8(quants, l) >> shift) & 0xF) &* s8(q8, 32 &* j &+ l) }
                isum &+= scales[j] &* s
            }
            sum += (half(p, 0) * a.scales[i]) * Float(isum)
                - (half(p, 2) * a.scales[i]) * Float(minimumTerm(a.blockSums + 16 &* i, mins))
        }
        return sum
    }
}

/// `ggml_vec_dot_q5_K_q8_K`: block_q5_K = f16 d, f16 dmin, 12 scale bytes, 32 bytes of
/// high bits, 128 bytes of nibbles; w = d·sc·(q + 16·h) − dmin·m per 32.
enum Q5_KDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 176 &* i, q8 = a.values + 256 &* i
            let (scales, mins) = kScalesAndMins(p + 4)
            var isum: Int32 = 0
            for j in 0..<8 {
                let quants = p + (48 &+ 32 &* (j >> 1)), shift = Int32(4 &* (j & 1)), bit = Int32(1) << Int32(j)
                var s: Int32 = 0
                for l in 0..<32 {
                    let w = ((u8(quants, l) >> shift) & 0xF) &+ ((u8(p, 16 &+ l) & bit) != 0 ? 16 : 0)
                    s &+= w &* s8(q8, 32 &* j &+ l)
                }
                isum &+= scales[j] &* s
            }
            sum += (half(p, 0) * a.scales[i]) * Float(isum)
                - (half(p, 2) * a.scales[i]) * Float(minimumTerm(a.blockSums + 16 &* i, mins))
        }
        return sum
    }
}

/// `ggml_vec_dot_q6_K_q8_K`: block_q6_K = 128 bytes of low nibbles, 64 bytes of 2-bit highs,
/// sixteen int8 scales, f16 d; w = d·sc·(q − 32) per 16.
enum Q6_KDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 210 &* i, q8 = a.values + 256 &* i
            var isum: Int32 = 0
            for half128 in 0..<2 {
                let ql = p + 64 &* half128, qh = p + (128 &+ 32 &* half128)
                for quarter in 0..<4 {
                    // Weights 128·half128 + 32·quarter + l.
                    let low = quarter & 1 == 0 ? 0 : 32, shift = Int32(quarter >> 1) &* 4
                    for sub in 0..<2 {
                        let j = 8 &* half128 &+ 2 &* quarter &+ sub
                        let scale = Int32(p.load(fromByteOffset: 192 &+ j, as: Int8.self))
                        var s: Int32 = 0
                        for l in (16 &* sub)..<(16 &* sub &+ 16) {
                            let w = (((u8(ql, low &+ l) >> shift) & 0xF) | (((u8(qh, l) >> Int32(2 &* quarter)) & 3) << 4)) &- 32
                            s &+= w &* s8(q8, 128 &* half128 &+ 32 &* quarter &+ l)
                        }
                        isum &+= scale &* s
                    }
                }
            }
            sum += (half(p, 208) * a.scales[i]) * Float(isum)
        }
        return sum
    }
}

/// `ggml_vec_dot_iq4_xs_q8_K`: block_iq4_xs = f16 d, 16 high scale bits, 4 bytes of low
/// scale nibbles, 128 bytes of nibbles indexing `kvalues_iq4nl`; w = d·(sc − 32)·kvalue per 32.
enum IQ4_XSDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        let values = GGMLTables.kvaluesIQ4NL.base
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 136 &* i, q8 = a.values + 256 &* i
            let d = half(p, 0) * a.scales[i]
            let high = Int32(p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            for j in 0..<8 {
                let low = (u8(p, 4 &+ (j >> 1)) >> Int32(4 &* (j & 1))) & 0xF
                let scale = low | (((high >> Int32(2 &* j)) & 3) << 4)
                let quants = p + (8 &+ 16 &* j)
                var s1: Int32 = 0, s2: Int32 = 0
                for l in 0..<16 {
                    let v = Int(u8(quants, l))
                    s1 &+= s8(q8, 32 &* j &+ l) &* Int32(values[v & 0xF])
                    s2 &+= s8(q8, 32 &* j &+ 16 &+ l) &* Int32(values[v >> 4])
                }
                sum += (d * Float(scale &- 32)) * Float(s1 &+ s2)
            }
        }
        return sum
    }
}

/// Σ over 8 weights of grid byte · activation · (±1 by the sign bits).
@inline(__always)
private func signedGridDot(_ grid: UInt64, _ signs: UInt8, _ q: UnsafePointer<Int8>) -> Int32 {
    var s: Int32 = 0
    for j in 0..<8 {
        let g = Int32((grid >> UInt64(8 &* j)) & 0xFF)
        let v = g &* Int32(q[j])
        s &+= (signs >> UInt8(j)) & 1 == 0 ? v : 0 &- v
    }
    return s
}

/// `ggml_vec_dot_iq2_xxs_q8_K`: block_iq2_xxs = f16 d, 32 × u16: per 32 weights four grid
/// indices (bytes) and a u32 of four 7-bit sign indices plus a 4-bit scale; × 1/8.
enum IQ2_XXSDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        let grid = GGMLTables.iq2xxsGrid.base, signs = GGMLTables.ksignsIQ2XS.base
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 66 &* i, q8 = a.values + 256 &* i
            var bsum: Int32 = 0
            for ib in 0..<8 {
                let indices = p.loadUnaligned(fromByteOffset: 2 &+ 8 &* ib, as: UInt32.self)
                let meta = p.loadUnaligned(fromByteOffset: 6 &+ 8 &* ib, as: UInt32.self)
                let scale = Int32(2 &* (meta >> 28) &+ 1)
                var s: Int32 = 0
                for l in 0..<4 {
                    let g = grid[Int((indices >> UInt32(8 &* l)) & 0xFF)]
                    s &+= signedGridDot(g, signs[Int((meta >> UInt32(7 &* l)) & 127)], q8 + (32 &* ib &+ 8 &* l))
                }
                bsum &+= s &* scale
            }
            sum += (half(p, 0) * a.scales[i]) * Float(bsum)
        }
        return 0.125 * sum
    }
}

/// `ggml_vec_dot_iq2_xs_q8_K`: block_iq2_xs = f16 d, 32 × u16 (9-bit grid index, 7-bit
/// sign index), 8 bytes of two 4-bit scales; × 1/8.
enum IQ2_XSDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        let grid = GGMLTables.iq2xsGrid.base, signs = GGMLTables.ksignsIQ2XS.base
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 74 &* i, q8 = a.values + 256 &* i
            var bsum: Int32 = 0
            for ib in 0..<8 {
                let scales = u8(p, 66 &+ ib)
                for h in 0..<2 {
                    var s: Int32 = 0
                    for l in (2 &* h)..<(2 &* h &+ 2) {
                        let code = Int(p.loadUnaligned(fromByteOffset: 2 &+ 2 &* (4 &* ib &+ l), as: UInt16.self))
                        s &+= signedGridDot(grid[code & 511], signs[code >> 9], q8 + (32 &* ib &+ 8 &* l))
                    }
                    bsum &+= s &* (2 &* ((scales >> Int32(4 &* h)) & 0xF) &+ 1)
                }
            }
            sum += (half(p, 0) * a.scales[i]) * Float(bsum)
        }
        return 0.125 * sum
    }
}

/// `ggml_vec_dot_iq2_s_q8_K`: block_iq2_s = f16 d, 32 grid-index bytes, 32 sign bytes,
/// 8 bytes of 2-bit index highs, 8 bytes of two 4-bit scales; × 1/8.
enum IQ2_SDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        let grid = GGMLTables.iq2sGrid.base
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 82 &* i, q8 = a.values + 256 &* i
            var bsum: Int32 = 0
            for ib in 0..<8 {
                let high = u8(p, 66 &+ ib), scales = u8(p, 74 &+ ib)
                var s1: Int32 = 0, s2: Int32 = 0
                for l in 0..<4 {
                    let index = Int(u8(p, 2 &+ 4 &* ib &+ l) | ((high << Int32(8 &- 2 &* l)) & 0x300))
                    let s = signedGridDot(grid[index], UInt8(u8(p, 34 &+ 4 &* ib &+ l)), q8 + (32 &* ib &+ 8 &* l))
                    if l < 2 { s1 &+= s } else { s2 &+= s }
                }
                bsum &+= (1 &+ 2 &* (scales & 0xF)) &* s1 &+ (1 &+ 2 &* (scales >> 4)) &* s2
            }
            sum += (half(p, 0) * a.scales[i]) * Float(bsum)
        }
        return 0.125 * sum
    }
}

/// Σ over 4 weights of grid byte · activation · (±1 by sign bits `first`…`first + 3`).
@inline(__always)
private func signedGrid4Dot(_ grid: UInt32, _ signs: UInt8, first: Int, _ q: UnsafePointer<Int8>) -> Int32 {
    var s: Int32 = 0
    for j in 0..<4 {
        let v = Int32((grid >> UInt32(8 &* j)) & 0xFF) &* Int32(q[j])
        s &+= (signs >> UInt8(first &+ j)) & 1 == 0 ? v : 0 &- v
    }
    return s
}

/// `ggml_vec_dot_iq3_xxs_q8_K`: block_iq3_xxs = f16 d, 64 grid-index bytes, then per 32
/// weights a u32 of four 7-bit sign indices and a 4-bit scale; × 1/4.
enum IQ3_XXSDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        let grid = GGMLTables.iq3xxsGrid.base, signs = GGMLTables.ksignsIQ2XS.base
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 98 &* i, q8 = a.values + 256 &* i
            var bsum: Int32 = 0
            for ib in 0..<8 {
                let meta = p.loadUnaligned(fromByteOffset: 66 &+ 4 &* ib, as: UInt32.self)
                let scale = Int32(2 &* (meta >> 28) &+ 1)
                var s: Int32 = 0
                for l in 0..<4 {
                    let sign = signs[Int((meta >> UInt32(7 &* l)) & 127)]
                    let q = q8 + (32 &* ib &+ 8 &* l)
                    s &+= signedGrid4Dot(grid[Int(u8(p, 2 &+ 8 &* ib &+ 2 &* l))], sign, first: 0, q)
                    s &+= signedGrid4Dot(grid[Int(u8(p, 2 &+ 8 &* ib &+ 2 &* l &+ 1))], sign, first: 4, q + 4)
                }
                bsum &+= s &* scale
            }
            sum += (half(p, 0) * a.scales[i]) * Float(bsum)
        }
        return 0.25 * sum
    }
}

/// `ggml_vec_dot_iq3_s_q8_K`: block_iq3_s = f16 d, 64 grid-index bytes, 8 bytes of index
/// high bits, 32 sign bytes, 4 bytes of two 4-bit scales.
enum IQ3_SDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        let grid = GGMLTables.iq3sGrid.base
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 110 &* i, q8 = a.values + 256 &* i
            var bsum: Int32 = 0
            for ib in 0..<8 {
                let high = u8(p, 66 &+ ib), scales = u8(p, 106 &+ (ib >> 1))
                let scale = 2 &* ((scales >> Int32(4 &* (ib & 1))) & 0xF) &+ 1
                var s: Int32 = 0
                for l in 0..<4 {
                    let sign = UInt8(u8(p, 74 &+ 4 &* ib &+ l))
                    let i1 = Int(u8(p, 2 &+ 8 &* ib &+ 2 &* l) | ((high << Int32(8 &- 2 &* l)) & 256))
                    let i2 = Int(u8(p, 2 &+ 8 &* ib &+ 2 &* l &+ 1) | ((high << Int32(7 &- 2 &* l)) & 256))
                    let q = q8 + (32 &* ib &+ 8 &* l)
                    s &+= signedGrid4Dot(grid[i1], sign, first: 0, q) &+ signedGrid4Dot(grid[i2], sign, first: 4, q + 4)
                }
                bsum &+= s &* scale
            }
            sum += (half(p, 0) * a.scales[i]) * Float(bsum)
        }
        return sum
    }
}

/// Σ over 8 weights of the int8 grid bytes · activations.
@inline(__always)
private func gridDot(_ grid: UInt64, _ q: UnsafePointer<Int8>) -> Int32 {
    var s: Int32 = 0
    for j in 0..<8 { s &+= Int32(Int8(truncatingIfNeeded: grid >> UInt64(8 &* j))) &* Int32(q[j]) }
    return s
}

/// `ggml_vec_dot_iq1_s_q8_K`: block_iq1_s = f16 d, 32 grid-index bytes, 8 × u16 (per 32
/// weights: four 3-bit index highs, a 3-bit scale, the sign of the ±δ shift).
enum IQ1_SDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        let grid = GGMLTables.iq1sGrid.base
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 50 &* i, q8 = a.values + 256 &* i, bs = a.blockSums + 16 &* i
            var sumi: Int32 = 0, sumi1: Int32 = 0
            for ib in 0..<8 {
                let qh = Int32(p.loadUnaligned(fromByteOffset: 34 &+ 2 &* ib, as: UInt16.self))
                let scale = 2 &* ((qh >> 12) & 7) &+ 1
                let delta: Int32 = qh & 0x8000 != 0 ? -1 : 1
                var lsum: Int32 = 0
                for l in 0..<4 {
                    let index = Int(u8(p, 2 &+ 4 &* ib &+ l) | (((qh >> Int32(3 &* l)) & 7) << 8))
                    lsum &+= gridDot(grid[index], q8 + (32 &* ib &+ 8 &* l))
                }
                sumi &+= scale &* lsum
                sumi1 &+= scale &* delta &* (Int32(bs[2 &* ib]) &+ Int32(bs[2 &* ib &+ 1]))
            }
            sum += half(p, 0) * a.scales[i] * (Float(sumi) + GGMLTables.iq1sDelta * Float(sumi1))
        }
        return sum
    }
}

/// `ggml_vec_dot_iq1_m_q8_K`: block_iq1_m = 32 grid-index bytes, 16 bytes of index highs
/// and shift signs, 8 bytes of 3-bit scales with the f16 d spread over their top nibbles.
enum IQ1_MDot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        let grid = GGMLTables.iq1sGrid.base
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 56 &* i, q8 = a.values + 256 &* i
            let sc0 = p.loadUnaligned(fromByteOffset: 48, as: UInt16.self), sc1 = p.loadUnaligned(fromByteOffset: 50, as: UInt16.self)
            let sc2 = p.loadUnaligned(fromByteOffset: 52, as: UInt16.self), sc3 = p.loadUnaligned(fromByteOffset: 54, as: UInt16.self)
            let scaleBits = (sc0 >> 12) | ((sc1 >> 8) & 0x00F0) | ((sc2 >> 4) & 0x0F00) | (sc3 & 0xF000)
            var sumi1: Int32 = 0, sumi2: Int32 = 0
            for ib in 0..<8 {
                let qh0 = u8(p, 32 &+ 2 &* ib), qh1 = u8(p, 33 &+ 2 &* ib)
                var sum1a: Int32 = 0, sum1b: Int32 = 0, sum2a: Int32 = 0, sum2b: Int32 = 0
                for l in 0..<4 {
                    let qh = l < 2 ? qh0 : qh1
                    let delta: Int32 = qh & (l % 2 == 0 ? 0x08 : 0x80) != 0 ? -1 : 1
                    let index = Int(u8(p, 4 &* ib &+ l) | ((qh << Int32(8 &- 4 &* (l % 2))) & 0x700))
                    let q = q8 + (32 &* ib &+ 8 &* l)
                    let lsum1 = gridDot(grid[index], q)
                    var lsum2: Int32 = 0
                    for j in 0..<8 { lsum2 &+= Int32(q[j]) }
                    if l < 2 {
                        sum1a &+= lsum1
                        sum2a &+= lsum2 &* delta
                    } else {
                        sum1b &+= lsum1
                        sum2b &+= lsum2 &* delta
                    }
                }
                let word = Int32(ib >> 1 == 0 ? sc0 : ib >> 1 == 1 ? sc1 : ib >> 1 == 2 ? sc2 : sc3), shift = Int32(6 &* (ib % 2))
                let ls1 = 2 &* ((word >> shift) & 7) &+ 1, ls2 = 2 &* ((word >> (shift &+ 3)) & 7) &+ 1
                sumi1 &+= sum1a &* ls1 &+ sum1b &* ls2
                sumi2 &+= sum2a &* ls1 &+ sum2b &* ls2
            }
            sum += Float(halfBits: scaleBits) * a.scales[i] * (Float(sumi1) + GGMLTables.iq1mDelta * Float(sumi2))
        }
        return sum
    }
}

/// `ggml_vec_dot_tq1_0_q8_K`: block_tq1_0 = 48 bytes of five base-3 digits each, 4 bytes of
/// four, f16 d; w = (digit − 1)·d.
enum TQ1_0Dot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        // 3^l for l = 0…5 as bytes of one word (no array on the heap).
        let powers: UInt64 = 0xF3_51_1B_09_03_01
        @inline(__always) func digit(_ byte: Int32, _ l: Int) -> Int32 {
            let q = UInt8(truncatingIfNeeded: byte) &* UInt8(truncatingIfNeeded: powers >> UInt64(8 &* l))
            return Int32((UInt16(q) &* 3) >> 8) &- 1
        }
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 54 &* i, q8 = a.values + 256 &* i
            var s: Int32 = 0
            for j in stride(from: 0, to: 32, by: 32) {
                for l in 0..<5 { for m in 0..<32 { s &+= digit(u8(p, j &+ m), l) &* s8(q8, j &* 5 &+ l &* 32 &+ m) } }
            }
            for j in stride(from: 32, to: 48, by: 16) {
                for l in 0..<5 { for m in 0..<16 { s &+= digit(u8(p, j &+ m), l) &* s8(q8, j &* 5 &+ l &* 16 &+ m) } }
            }
            for l in 0..<4 { for j in 0..<4 { s &+= digit(u8(p, 48 &+ j), l) &* s8(q8, 240 &+ l &* 4 &+ j) } }
            sum += Float(s) * (half(p, 52) * a.scales[i])
        }
        return sum
    }
}

/// `ggml_vec_dot_tq2_0_q8_K`: block_tq2_0 = 64 bytes of 2-bit values, f16 d; w = (q − 1)·d.
enum TQ2_0Dot: BlockDot {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ a: ActivationRow, blocks: Int) -> Float {
        var sum: Float = 0
        for i in 0..<blocks {
            let p = row + 66 &* i, q8 = a.values + 256 &* i
            var s: Int32 = 0
            for j in stride(from: 0, to: 64, by: 32) {
                for l in 0..<4 {
                    for k in 0..<32 { s &+= s8(q8, j &* 4 &+ l &* 32 &+ k) &* (((u8(p, j &+ k) >> Int32(2 &* l)) & 3) &- 1) }
                }
            }
            sum += Float(s) * (a.scales[i] * half(p, 64))
        }
        return sum
    }
}

/// The scalar row kernel of `format` (every kernel set has these).
func scalarBlockRows(_ format: BlockFormat, _ a: QuantizedActivations, weight: WeightMatrix, rows: Range<Int>,
                     y: UnsafeMutablePointer<Float>, outputStride: Int) {
    switch format {
    case .q4_0: blockRows(Q4_0Dot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q4_1: blockRows(Q4_1Dot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q5_0: blockRows(Q5_0Dot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q5_1: blockRows(Q5_1Dot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q8_0: blockRows(Q8_0Dot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq4_nl: blockRows(IQ4_NLDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .mxfp4: blockRows(MXFP4Dot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q2_K: blockRows(Q2_KDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q3_K: blockRows(Q3_KDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q4_K: blockRows(Q4_KDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q5_K: blockRows(Q5_KDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .q6_K: blockRows(Q6_KDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq4_xs: blockRows(IQ4_XSDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq2_xxs: blockRows(IQ2_XXSDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq2_xs: blockRows(IQ2_XSDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq2_s: blockRows(IQ2_SDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq3_xxs: blockRows(IQ3_XXSDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq3_s: blockRows(IQ3_SDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq1_s: blockRows(IQ1_SDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .iq1_m: blockRows(IQ1_MDot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .tq1_0: blockRows(TQ1_0Dot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    case .tq2_0: blockRows(TQ2_0Dot.self, a, weight: weight, rows: rows, y: y, outputStride: outputStride)
    }
}
