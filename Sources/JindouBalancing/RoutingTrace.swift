import Foundation

// Routing traces: which experts each token chose, per step and MoE layer.
//
// File format (all integers little-endian; documented in docs/balancing.md):
//
//   header  "JDTRACE1" (8 bytes)
//           u32 version (1), u32 experts, u32 layers, u32 topK, u32 flags
//           if flags & 1 (synthetic): u64 seed, f64 zipf, u32 tokensPerStep, u32 shiftEvery
//           u32 CRC-32 of the header bytes before it
//   steps   repeated until end of file:
//           u32 tokens, then layers × tokens × topK u16 expert ids (layer-major, each
//           token's choices in descending score order), then u32 CRC-32 of the step's bytes
//           (token count included)
//
// A step carries its own token count, so a recorder can append batches of any size and
// the file needs no step count up front; a truncated or corrupted step is detected by its
// length or checksum and named in the error.

/// Errors reading a routing trace, naming the file and the step/layer at fault.
public enum TraceError: Error, Equatable, CustomStringConvertible {
    case notATrace(path: String)
    case unsupportedVersion(path: String, version: UInt32)
    case badHeader(path: String, reason: String)
    case truncated(path: String, step: Int)
    case checksumMismatch(path: String, step: Int)
    case expertOutOfRange(path: String, step: Int, layer: Int, expert: Int, experts: Int)
    case shapeMismatch(String)
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case .notATrace(let path): "\(path): not a Jindou routing trace (magic JDTRACE1 missing)"
        case .unsupportedVersion(let path, let version): "\(path): trace version \(version), this build reads version 1"
        case .badHeader(let path, let reason): "\(path): bad trace header: \(reason)"
        case .truncated(let path, let step): "\(path): step \(step) is truncated"
        case .checksumMismatch(let path, let step): "\(path): step \(step) fails its CRC-32 check (corrupt file)"
        case .expertOutOfRange(let path, let step, let layer, let expert, let experts):
            "\(path): step \(step), layer \(layer) names expert \(expert), the trace has \(experts)"
        case .shapeMismatch(let reason): "trace shape mismatch: \(reason)"
        case .io(let path, let reason): "\(path): \(reason)"
        }
    }
}

/// How a synthetic trace was generated: enough to regenerate every token's routing scores
/// (for the serving-bias simulation) without storing them.
public struct SyntheticTraceParameters: Sendable, Equatable, Codable {
    public var seed: UInt64
    /// Zipf exponent s: the expert of popularity rank r is chosen with probability ∝ r^-s.
    public var zipf: Double
    public var tokensPerStep: Int
    /// The hot set (per-layer permutation) changes every `shiftEvery` steps; 0 never.
    public var shiftEvery: Int

    public init(seed: UInt64, zipf: Double, tokensPerStep: Int, shiftEvery: Int) {
        self.seed = seed
        self.zipf = zipf
        self.tokensPerStep = tokensPerStep
        self.shiftEvery = shiftEvery
    }
}

/// The shape of a trace.
public struct TraceHeader: Sendable, Equatable {
    public var experts: Int
    public var layers: Int
    public var topK: Int
    public var synthetic: SyntheticTraceParameters?

    public init(experts: Int, layers: Int, topK: Int, synthetic: SyntheticTraceParameters? = nil) {
        self.experts = experts
        self.layers = layers
        self.topK = topK
        self.synthetic = synthetic
    }
}

/// One step's routing: `choices[(layer · tokens + token) · topK + j]` is token's j-th expert.
public struct TraceStep: Sendable, Equatable {
    public var tokens: Int
    public var choices: [UInt16]

    public init(tokens: Int, choices: [UInt16]) {
        self.tokens = tokens
        self.choices = choices
    }
}

/// A routing trace held in memory.
public struct RoutingTrace: Sendable, Equatable {
    public var header: TraceHeader
    public var steps: [TraceStep]

    public init(header: TraceHeader, steps: [TraceStep] = []) {
        self.header = header
        self.steps = steps
    }

    public var tokenCount: Int { steps.reduce(0) { $0 + $1.tokens } }

    /// Tokens routed to each expert of each layer over `steps` (`[layer][expert]`).
    public func expertLoad(steps range: Range<Int>? = nil) -> [[Double]] {
        let e = header.experts, k = header.topK
        var counts = [[Int]](repeating: [Int](repeating: 0, count: e), count: header.layers)
        for step in steps[range ?? 0..<steps.count] {
            step.choices.withUnsafeBufferPointer { choices in
                for layer in 0..<header.layers {
                    let base = layer * step.tokens * k
                    for i in 0..<(step.tokens * k) { counts[layer][Int(choices[base + i])] += 1 }
                }
            }
        }
        return counts.map { $0.map(Double.init) }
    }

    /// Reads a whole trace file.
    public static func read(path: String) throws -> RoutingTrace {
        var reader = try TraceReader(path: path)
        var trace = RoutingTrace(header: reader.header)
        while let step = try reader.next() { trace.steps.append(step) }
        return trace
    }

    /// Writes the whole trace to `path`.
    public func write(path: String) throws {
        let writer = try TraceWriter(path: path, header: header)
        for step in steps { try writer.append(step) }
        try writer.close()
    }
}

// MARK: - Byte helpers

private struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func f64(_ v: Double) { u64(v.bitPattern) }
}

private struct ByteReader {
    let data: Data
    var offset = 0
    var remaining: Int { data.count - offset }
    mutating func u32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(data[data.startIndex + offset + i]) << (8 * UInt32(i)) }
        offset += 4
        return v
    }
    mutating func u64() -> UInt64? {
        guard let low = u32(), let high = u32() else { return nil }
        return UInt64(low) | UInt64(high) << 32
    }
}

private let traceMagic = Array("JDTRACE1".utf8)

// MARK: - Writer, reader, recorder

/// Appends steps to a trace file as they happen.
public final class TraceWriter {
    public let header: TraceHeader
    public let path: String
    private let handle: FileHandle

    public init(path: String, header: TraceHeader) throws {
        precondition(header.experts <= Int(UInt16.max) + 1, "expert ids are stored as UInt16")
        self.header = header
        self.path = path
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw TraceError.io(path: path, reason: "cannot create file")
        }
        do { handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path)) } catch {
            throw TraceError.io(path: path, reason: "\(error)")
        }
        var w = ByteWriter()
        w.bytes = traceMagic
        w.u32(1)
        w.u32(UInt32(header.experts)); w.u32(UInt32(header.layers)); w.u32(UInt32(header.topK))
        w.u32(header.synthetic == nil ? 0 : 1)
        if let s = header.synthetic {
            w.u64(s.seed); w.f64(s.zipf); w.u32(UInt32(s.tokensPerStep)); w.u32(UInt32(s.shiftEvery))
        }
        w.u32(CRC32.checksum(w.bytes))
        try write(w.bytes)
    }

    /// Appends one step; `step.choices` must hold layers × tokens × topK ids.
    public func append(_ step: TraceStep) throws {
        guard step.choices.count == header.layers * step.tokens * header.topK else {
            throw TraceError.shapeMismatch("step has \(step.choices.count) choices, expected \(header.layers) layers × \(step.tokens) tokens × \(header.topK)")
        }
        var w = ByteWriter()
        w.bytes.reserveCapacity(8 + step.choices.count * 2)
        w.u32(UInt32(step.tokens))
        step.choices.withUnsafeBufferPointer { buffer in
            for id in buffer { w.bytes.append(UInt8(id & 0xff)); w.bytes.append(UInt8(id >> 8)) }
        }
        w.u32(CRC32.checksum(w.bytes))
        try write(w.bytes)
    }

    public func close() throws {
        do { try handle.close() } catch { throw TraceError.io(path: path, reason: "\(error)") }
    }

    private func write(_ bytes: [UInt8]) throws {
        do { try handle.write(contentsOf: Data(bytes)) } catch { throw TraceError.io(path: path, reason: "\(error)") }
    }
}

/// Reads a trace file step by step.
public struct TraceReader {
    public let header: TraceHeader
    public let path: String
    private var reader: ByteReader
    private var stepIndex = 0

    public init(path: String) throws {
        self.path = path
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TraceError.io(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        guard data.count >= 8, Array(data.prefix(8)) == traceMagic else { throw TraceError.notATrace(path: path) }
        var r = ByteReader(data: data, offset: 8)
        guard let version = r.u32() else { throw TraceError.badHeader(path: path, reason: "too short") }
        guard version == 1 else { throw TraceError.unsupportedVersion(path: path, version: version) }
        guard let e = r.u32(), let l = r.u32(), let k = r.u32(), let flags = r.u32() else {
            throw TraceError.badHeader(path: path, reason: "too short")
        }
        var synthetic: SyntheticTraceParameters?
        if flags & 1 != 0 {
            guard let seed = r.u64(), let zipf = r.u64(), let tps = r.u32(), let shift = r.u32() else {
                throw TraceError.badHeader(path: path, reason: "synthetic parameters truncated")
            }
            synthetic = SyntheticTraceParameters(seed: seed, zipf: Double(bitPattern: zipf), tokensPerStep: Int(tps), shiftEvery: Int(shift))
        }
        let headerEnd = r.offset
        guard let crc = r.u32(), crc == CRC32.checksum(Array(data[data.startIndex..<(data.startIndex + headerEnd)])) else {
            throw TraceError.badHeader(path: path, reason: "header CRC-32 mismatch")
        }
        guard e >= 1, e <= 65536, l >= 1, k >= 1, k <= e else {
            throw TraceError.badHeader(path: path, reason: "experts \(e), layers \(l), top-k \(k) is not a valid shape")
        }
        header = TraceHeader(experts: Int(e), layers: Int(l), topK: Int(k), synthetic: synthetic)
        reader = r
    }

    /// The next step, or nil at the end of the file.
    public mutating func next() throws -> TraceStep? {
        guard reader.remaining > 0 else { return nil }
        let start = reader.offset
        guard let tokens = reader.u32() else { throw TraceError.truncated(path: path, step: stepIndex) }
        let count = header.layers * Int(tokens) * header.topK
        guard reader.remaining >= count * 2 + 4 else { throw TraceError.truncated(path: path, step: stepIndex) }
        let data = reader.data
        let base = data.startIndex + reader.offset
        var choices = [UInt16](repeating: 0, count: count)
        data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            let offset = base - data.startIndex
            for i in 0..<count { choices[i] = UInt16(bytes[offset + 2 * i]) | UInt16(bytes[offset + 2 * i + 1]) << 8 }
        }
        reader.offset += count * 2
        let end = reader.offset
        let expected = reader.u32()!
        let actual = data.withUnsafeBytes { raw in
            CRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[(start)..<(end)]))
        }
        guard expected == actual else { throw TraceError.checksumMismatch(path: path, step: stepIndex) }
        let perLayer = Int(tokens) * header.topK
        for (i, id) in choices.enumerated() where Int(id) >= header.experts {
            throw TraceError.expertOutOfRange(path: path, step: stepIndex, layer: i / max(1, perLayer), expert: Int(id), experts: header.experts)
        }
        stepIndex += 1
        return TraceStep(tokens: Int(tokens), choices: choices)
    }
}

/// What the coordinator calls while serving to record a trace: one `beginStep`, then one
/// `record` per MoE layer (in layer order of the trace), then `endStep`. Not thread-safe:
/// the owner (one actor or the step loop) serialises calls.
public final class TraceRecorder {
    public let writer: TraceWriter
    private var tokens = 0
    private var layersRecorded = 0
    private var choices: [UInt16] = []

    public init(writer: TraceWriter) { self.writer = writer }

    /// Starts a step of `tokens` tokens.
    public func beginStep(tokens: Int) {
        self.tokens = tokens
        layersRecorded = 0
        choices.removeAll(keepingCapacity: true)
        choices.reserveCapacity(writer.header.layers * tokens * writer.header.topK)
    }

    /// Records one MoE layer's top-k choices: `experts[token · topK + j]` (the router's
    /// top-k index output, Int32).
    public func record(layer: Int, experts: [Int32]) throws {
        guard layer == layersRecorded else {
            throw TraceError.shapeMismatch("recorded layer \(layer), expected trace layer \(layersRecorded)")
        }
        guard experts.count == tokens * writer.header.topK else {
            throw TraceError.shapeMismatch("layer \(layer): \(experts.count) choices for \(tokens) tokens × top-\(writer.header.topK)")
        }
        for id in experts {
            guard id >= 0 && Int(id) < writer.header.experts else {
                throw TraceError.shapeMismatch("layer \(layer): expert \(id) out of range 0..<\(writer.header.experts)")
            }
            choices.append(UInt16(id))
        }
        layersRecorded += 1
    }

    /// Writes the step once every layer has been recorded.
    public func endStep() throws {
        guard layersRecorded == writer.header.layers else {
            throw TraceError.shapeMismatch("step ended after \(layersRecorded) of \(writer.header.layers) layers")
        }
        try writer.append(TraceStep(tokens: tokens, choices: choices))
    }
}

// MARK: - CRC-32 (IEEE, as zlib and PNG use)

/// CRC-32 with the IEEE polynomial (reflected 0xEDB88320), as in PNG chunks and gzip.
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xff)] ^ (c >> 8) }
        }
        return ~c
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 { update(0, bytes) }
    public static func checksum(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { update(0, $0) } }
}
