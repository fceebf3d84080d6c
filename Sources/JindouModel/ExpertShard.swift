import JindouNumerics
import Synchronization
import JindouRouting

/// Computes the routed experts of a MoE layer for a batch: the seam between the engine
/// and where experts live (DESIGN invariant 1: one engine, any placement).
///
/// The single-process engine uses an `ExpertShard` holding every expert; the
/// coordinator uses a backend that dispatches to workers, each of which holds an
/// `ExpertShard` of its own experts.
public protocol ExpertBackend: Sendable {
    /// For each of `tokenCount` rows of `hidden` (`hiddenSize` wide), the sum over the
    /// token's routed experts of `weight × expert(hidden)`, in ascending expert order.
    func routedExperts(layer: Int, hidden: [Float], tokenCount: Int, routing: RoutingDecision) async throws -> [Float]

    /// Runs one forward step (every layer of it). A cluster backend fixes its placement
    /// for the whole step here, so placement switches happen between steps.
    func step<Result: Sendable>(_ body: @Sendable () async throws -> Result) async throws -> Result

    /// Routes a MoE layer's `tokens` rows of `hidden`. The default is the router's own
    /// choice; the cluster backend may add its serving-time balancing bias here
    /// (selection only, on top of the checkpoint's correction bias).
    func route(layer: Int, router: Router, hidden: UnsafePointer<Float>, tokens: Int,
               expertsPerToken: (Int) -> ExpertsPerToken) -> RoutingDecision

    /// Whether routed experts are computed elsewhere (workers across a network), so a
    /// step's micro-batches can overlap them (`MicroBatching.auto`).
    var isRemote: Bool { get }
}

extension ExpertBackend {
    public func route(layer: Int, router: Router, hidden: UnsafePointer<Float>, tokens: Int,
                      expertsPerToken: (Int) -> ExpertsPerToken) -> RoutingDecision {
        router.route(hidden: hidden, tokens: tokens, expertsPerToken: expertsPerToken)
    }

    public func step<Result: Sendable>(_ body: @Sendable () async throws -> Result) async throws -> Result {
        try await body()
    }

    public var isRemote: Bool { false }
}

/// The three projections of one routed expert (`Qwen3MoeMLP` shape with
/// `moe_intermediate_size`): down(silu(gate·x) * up·x), with the projections' biases
/// where the checkpoint has them (gpt-oss).
public struct ExpertWeights: Sendable {
    public let gate: WeightMatrix
    public let up: WeightMatrix
    public let down: WeightMatrix
    public let gateBias: [Float]?
    public let upBias: [Float]?
    public let downBias: [Float]?

    public init(gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix,
                gateBias: [Float]? = nil, upBias: [Float]? = nil, downBias: [Float]? = nil) {
        self.gate = gate
        self.up = up
        self.down = down
        self.gateBias = gateBias
        self.upBias = upBias
        self.downBias = downBias
    }

    /// The same biases on other matrices (the experts re-encoded).
    func replacingMatrices(gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix) -> ExpertWeights {
        ExpertWeights(gate: gate, up: up, down: down, gateBias: gateBias, upBias: upBias, downBias: downBias)
    }

    public var byteCount: Int {
        gate.byteCount + up.byteCount + down.byteCount + 4 * [gateBias, upBias, downBias].reduce(0) { $0 + ($1?.count ?? 0) }
    }
}

public enum ExpertShardError: Error, Equatable, CustomStringConvertible {
    case expertNotHosted(layer: Int, expert: Int)
    case badRouting(reason: String)
    case unsupportedFormat(String)

    public var description: String {
        switch self {
        case .expertNotHosted(let layer, let expert):
            "expert \(expert) of layer \(layer) is not hosted here"
        case .badRouting(let reason):
            "bad routing: \(reason)"
        case .unsupportedFormat(let reason):
            reason
        }
    }
}

/// A set of routed experts loaded into memory, and the grouped SwiGLU that computes them.
public struct ExpertShard: ExpertBackend {
    public let hiddenSize: Int
    public let intermediateSize: Int
    public let experts: [ExpertKey: ExpertWeights]
    /// What runs between gate/up and down.
    public let activation: ExpertActivation
    /// The tensors this shard loaded (keeps mappings alive; reports mapped bytes). A shard
    /// assembled from others holds none; its experts keep their own mappings alive.
    public let tensors: TensorSet

    /// Loads exactly `keys` from `checkpoint`: no other tensor is mapped.
    public init(description: ModelDescription, checkpoint: any WeightSource, keys: [ExpertKey]) throws {
        let requests = keys.flatMap { description.expertTensors($0) }
        let tensors = try checkpoint.load(requests)
        var experts: [ExpertKey: ExpertWeights] = [:]
        for key in keys {
            func matrix(_ projection: String) throws -> WeightMatrix {
                try tensors.matrix(description.expertTensorKey(key, projection: projection),
                                   quantization: description.weightQuantization)
            }
            switch description.expertStorage {
            case .perExpert:
                func bias(_ projection: String) throws -> [Float]? {
                    guard description.expertBiases else { return nil }
                    let name = description.expertBiasKey(key, projection: projection)
                    guard let view = tensors[name] else { throw CheckpointError.missingTensor(tensor: name, searched: []) }
                    return try view.floats()
                }
                experts[key] = ExpertWeights(gate: try matrix("gate"), up: try matrix("up"), down: try matrix("down"),
                                             gateBias: try bias("gate"), upBias: try bias("up"), downBias: try bias("down"))
            case .fused:
                experts[key] = try Self.fusedExpert(key, description: description, tensors: tensors)
            case .interleavedWithBias(let mxfp4):
                experts[key] = try Self.interleavedExpert(key, description: description, tensors: tensors, mxfp4: mxfp4)
            }
        }
        self.hiddenSize = description.hiddenSize
        self.intermediateSize = description.moeIntermediateSize
        self.experts = experts
        self.activation = description.expertActivation
        // Input-major fused experts were copied out (transposed); their mappings are not kept.
        let copied = experts.values.contains { $0.gate.owner is OwnedBytes }
        self.tensors = copied ? TensorSet(tensors: [:], regions: []) : tensors
    }

    /// One expert from stacked `gate_up_proj` / `down_proj` slices, in either orientation.
    static func fusedExpert(_ key: ExpertKey, description: ModelDescription, tensors: TensorSet) throws -> ExpertWeights {
        let moe = description.moeIntermediateSize, h = description.hiddenSize
        let gateUpKey = description.expertTensorKey(key, projection: "gate")
        let downKey = description.expertTensorKey(key, projection: "down")
        guard let gateUpView = tensors[gateUpKey], let downView = tensors[downKey] else {
            throw CheckpointError.missingTensor(tensor: gateUpKey, searched: [])
        }
        let gateUpShape = Array(gateUpView.shape.dropFirst()), downShape = Array(downView.shape.dropFirst())
        let e = description.expertCount
        if gateUpShape == [2 * moe, h] && downShape == [h, moe] {
            let gateUp = try tensors.matrix(gateUpKey, quantization: nil, as: gateUpShape)
            return ExpertWeights(gate: gateUp.rows(0..<moe), up: gateUp.rows(moe..<(2 * moe)),
                                 down: try tensors.matrix(downKey, quantization: nil, as: downShape))
        }
        if gateUpShape == [h, 2 * moe] && downShape == [moe, h] {
            let gateUp = try tensors.matrix(gateUpKey, quantization: nil, as: gateUpShape)
            let down = try tensors.matrix(downKey, quantization: nil, as: downShape)
            return ExpertWeights(gate: gateUp.transposedCopy(columns: 0..<moe), up: gateUp.transposedCopy(columns: moe..<(2 * moe)),
                                 down: down.transposedCopy(columns: 0..<h))
        }
        throw CheckpointError.shapeMismatch(
            path: gateUpView.path, tensor: gateUpView.name.components(separatedBy: "[").first ?? gateUpView.name,
            expected: [e, 2 * moe, h], actual: [e] + gateUpShape)
    }

    /// One gpt-oss expert (`ExpertStorage.interleavedWithBias`): gate and up are the even
    /// and odd outputs of `gate_up_proj`, as are their biases. Float experts are transposed
    /// out of the input-major stack (owned copies); MXFP4 experts are repacked, bits
    /// unchanged, into ggml's block layout (`MXFP4.repackedRows`) and stay MXFP4, multiplied
    /// with fp32 activations as transformers computes them (`WeightMatrix.floatActivations`).
    static func interleavedExpert(_ key: ExpertKey, description: ModelDescription, tensors: TensorSet, mxfp4: Bool) throws -> ExpertWeights {
        let m = description.moeIntermediateSize, h = description.hiddenSize
        func view(_ name: String) throws -> TensorView {
            let request = description.stackedExpertSlice(key, name)
            guard let view = tensors[request.key] else { throw CheckpointError.missingTensor(tensor: request.name, searched: []) }
            return view
        }
        func matrix(_ name: String, as shape: [Int]) throws -> WeightMatrix {
            _ = try view(name)
            return try tensors.matrix(description.stackedExpertSlice(key, name).key, quantization: nil, as: shape)
        }
        let gateUpBias = try view("gate_up_proj_bias").floats()
        let downBias = try view("down_proj_bias").floats()
        let even = Array(stride(from: 0, to: 2 * m, by: 2)), odd = Array(stride(from: 1, to: 2 * m, by: 2))
        let gateBias = even.map { gateUpBias[$0] }, upBias = odd.map { gateUpBias[$0] }
        guard mxfp4 else {
            let gateUp = try matrix("gate_up_proj", as: [h, 2 * m]), down = try matrix("down_proj", as: [m, h])
            return ExpertWeights(gate: gateUp.transposedCopy(columns: even), up: gateUp.transposedCopy(columns: odd),
                                 down: down.transposedCopy(columns: 0..<h), gateBias: gateBias, upBias: upBias, downBias: downBias)
        }
        func repacked(_ name: String, rows: some Collection<Int>, columns: Int) throws -> WeightMatrix {
            let blocks = try view(name + "_blocks"), scales = try view(name + "_scales")
            for v in [blocks, scales] where v.dtype != .uint8 {
                throw CheckpointError.unsupportedDType(path: v.path, tensor: request(v), dtype: v.dtype.rawValue, supported: "U8 (MXFP4 blocks and E8M0 scales)")
            }
            let storage = MXFP4.repackedRows(blocks: blocks.pointer, scales: scales.pointer, rows: rows, columns: columns)
            // transformers dequantises and multiplies in float: fp32 activations, not int8 blocks.
            return WeightMatrix(rows: rows.count, columns: columns, quantized: .mxfp4, base: UnsafeRawPointer(storage.pointer), owner: storage)
                .withFloatActivations()
        }
        func request(_ v: TensorView) -> String { v.name.components(separatedBy: "[").first ?? v.name }
        return ExpertWeights(gate: try repacked("gate_up_proj", rows: even, columns: h), up: try repacked("gate_up_proj", rows: odd, columns: h),
                             down: try repacked("down_proj", rows: 0..<h, columns: m), gateBias: gateBias, upBias: upBias, downBias: downBias)
    }

    /// A shard of already-loaded experts (their weight matrices keep their mappings alive).
    public init(description: ModelDescription, experts: [ExpertKey: ExpertWeights]) {
        self.init(hiddenSize: description.hiddenSize, intermediateSize: description.moeIntermediateSize,
                  activation: description.expertActivation, experts: experts)
    }

    public var keys: [ExpertKey] { experts.keys.sorted() }

    /// Every expert re-encoded in `format` (owned memory, as llama-quantize encodes it; the
    /// checkpoint's mappings are dropped). Deterministic. Throws when a projection's input
    /// width is not a whole number of `format` blocks. Experts a GGUF file already stores in
    /// `format` are kept as they are; in another block format, they are refused.
    public func quantized(_ format: BlockFormat) throws -> ExpertShard {
        if let stored = experts.values.first(where: { $0.gate.blockFormat != nil })?.gate.blockFormat {
            guard stored == format else {
                throw ExpertShardError.unsupportedFormat(
                    "the experts are stored as \(stored.rawValue); re-encoding them as \(format.rawValue) is not supported (load them as stored)")
            }
            return self
        }
        for width in [hiddenSize, intermediateSize] where width % format.blockSize != 0 {
            throw ExpertShardError.unsupportedFormat(
                "\(format.rawValue) needs projection widths that are multiples of \(format.blockSize); this model has hidden \(hiddenSize), expert intermediate \(intermediateSize)")
        }
        let keys = self.keys
        let converted = Mutex([ExpertKey: ExpertWeights]())
        parallelFor(keys.count) { i in
            let weights = experts[keys[i]]!
            let q = weights.replacingMatrices(gate: weights.gate.quantized(format), up: weights.up.quantized(format),
                                              down: weights.down.quantized(format))
            converted.withLock { $0[keys[i]] = q }
        }
        return ExpertShard(hiddenSize: hiddenSize, intermediateSize: intermediateSize, activation: activation,
                           experts: converted.withLock { $0 })
    }

    init(hiddenSize: Int, intermediateSize: Int, activation: ExpertActivation, experts: [ExpertKey: ExpertWeights]) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.activation = activation
        self.experts = experts
        self.tensors = TensorSet(tensors: [:], regions: [])
    }

    /// Bytes of expert weights held.
    public var byteCount: Int { experts.values.reduce(0) { $0 + $1.byteCount } }

    public func routedExperts(layer: Int, hidden: [Float], tokenCount: Int, routing: RoutingDecision) async throws -> [Float] {
        try compute(layer: layer, hidden: hidden, tokenCount: tokenCount, routing: routing)
    }

    /// Grouped expert SwiGLU: tokens are grouped per expert so each expert's weights are
    /// read once for all its tokens; experts run in parallel; outputs are summed per
    /// token in ascending expert order.
    ///
    /// Bytes read: 3 × hidden × moe_intermediate × dtype bytes per distinct expert used.
    /// Gate and up share one pass over the input (`linearPair`).
    public func compute(layer: Int, hidden: [Float], tokenCount: Int, routing: RoutingDecision) throws -> [Float] {
        guard routing.tokenCount == tokenCount, hidden.count == tokenCount * hiddenSize else {
            throw ExpertShardError.badRouting(
                reason: "\(routing.tokenCount) routed tokens and \(hidden.count) hidden values for \(tokenCount) tokens of width \(hiddenSize)")
        }
        var output = [Float](repeating: 0, count: tokenCount * hiddenSize)
        try hidden.withUnsafeBufferPointer { x in
            try output.withUnsafeMutableBufferPointer { out in
                try compute(layer: layer, hidden: x.baseAddress!, tokenCount: tokenCount, routing: routing, into: out.baseAddress!)
            }
        }
        return output
    }

    /// `compute` into `output` (`tokenCount × hiddenSize`, overwritten), allocating nothing
    /// once the calling thread's scratch has grown to the batch: the grouping, each expert's
    /// gathered inputs, its gate/up activations and its output rows live in thread scratch
    /// (`ScratchSlot.expertGroups`, `.expertActivations`), and experts are spread over the
    /// threads with `parallelApply`.
    public func compute(layer: Int, hidden x: UnsafePointer<Float>, tokenCount: Int, routing: RoutingDecision,
                        into output: UnsafeMutablePointer<Float>) throws {
        guard routing.tokenCount == tokenCount else {
            throw ExpertShardError.badRouting(reason: "\(routing.tokenCount) routed tokens for \(tokenCount) tokens")
        }
        // Plain pointers into the decision's arrays: index loops over them allocate nothing,
        // also unoptimised (an array iterator's generic accessor would, per element).
        try routing.experts.withUnsafeBufferPointer { chosen in
            try routing.offsets.withUnsafeBufferPointer { offsets in
                try routing.weights.withUnsafeBufferPointer { weights in
                    try computeGrouped(layer: layer, hidden: x, tokenCount: tokenCount, chosen: chosen.baseAddress!,
                                       assignments: chosen.count, offsets: offsets.baseAddress!, weights: weights.baseAddress!,
                                       into: output)
                }
            }
        }
    }

    private func computeGrouped(
        layer: Int, hidden x: UnsafePointer<Float>, tokenCount: Int, chosen: UnsafePointer<Int32>, assignments: Int,
        offsets: UnsafePointer<Int>, weights: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>
    ) throws {
        let h = hiddenSize, m = intermediateSize
        var largest = -1
        for i in 0..<assignments {
            let e = chosen[i]
            guard e >= 0 else { throw ExpertShardError.badRouting(reason: "negative expert index \(e)") }
            largest = max(largest, Int(e))
        }
        // Counting sort of the (token, expert) pairs by expert; tokens stay in ascending order
        // within each expert. Integers: per-expert cursor, experts used, group starts, and
        // each grouped row's token and routing index.
        let span = largest + 1
        let integers = threadScratch(.expertGroups, Int.self, count: span + (span + 1) + (span + 1) + 2 * assignments)
        let cursor = integers, order = integers + span, groupStarts = order + span + 1
        let rowToken = groupStarts + span + 1, rowPair = rowToken + assignments
        cursor.initialize(repeating: 0, count: span)
        for i in 0..<assignments { cursor[Int(chosen[i])] += 1 }
        var used = 0
        groupStarts[0] = 0
        for e in 0..<span where cursor[e] > 0 {
            guard experts[ExpertKey(layer: layer, expert: e)] != nil else { throw ExpertShardError.expertNotHosted(layer: layer, expert: e) }
            order[used] = e
            groupStarts[used + 1] = groupStarts[used] + cursor[e]
            cursor[e] = groupStarts[used]
            used += 1
        }
        for t in 0..<tokenCount {
            for i in offsets[t]..<offsets[t + 1] {
                let e = Int(chosen[i])
                rowToken[cursor[e]] = t
                rowPair[cursor[e]] = i
                cursor[e] += 1
            }
        }

        // Floats: gathered inputs, gate and up activations, and the output slab, one row per
        // grouped (expert, token) pair.
        let floats = threadScratch(.expertActivations, Float.self, count: assignments * (2 * h + 2 * m))
        var task = ExpertTask(experts: experts, layer: layer, order: order, groupStarts: groupStarts, rowToken: rowToken, x: x,
                              input: floats, gate: floats + assignments * h, up: floats + assignments * (h + m),
                              slab: floats + assignments * (h + 2 * m), hidden: h, intermediate: m, activation: activation,
                              parallelInside: false)
        // Enough experts to keep every thread busy: one expert per task. Otherwise split
        // each expert's rows over the threads instead.
        if used >= Parallelism.threads {
            parallelApply(used, &task) { context, index in context!.assumingMemoryBound(to: ExpertTask.self).pointee.run(index) }
        } else {
            task.parallelInside = true
            for i in 0..<used { task.run(i) }
        }

        // Combine in ascending expert order, as transformers' index_add_ loop does.
        output.initialize(repeating: 0, count: tokenCount * h)
        for row in 0..<assignments {
            let source = task.slab + row * h
            let target = output + rowToken[row] * h
            let w = weights[rowPair[row]]
            for i in 0..<h { target[i] += source[i] * w }
        }
    }
}

/// One expert's share of `ExpertShard.compute`: gather its tokens, gate and up in one pass,
/// SwiGLU, down. A value of pointers into the caller's scratch, for `parallelApply`.
private struct ExpertTask {
    let experts: [ExpertKey: ExpertWeights]
    let layer: Int
    let order: UnsafeMutablePointer<Int>
    let groupStarts: UnsafeMutablePointer<Int>
    let rowToken: UnsafeMutablePointer<Int>
    let x: UnsafePointer<Float>
    let input: UnsafeMutablePointer<Float>
    let gate: UnsafeMutablePointer<Float>
    let up: UnsafeMutablePointer<Float>
    let slab: UnsafeMutablePointer<Float>
    let hidden: Int
    let intermediate: Int
    let activation: ExpertActivation
    var parallelInside: Bool

    func run(_ index: Int) {
        let h = hidden, m = intermediate
        let first = groupStarts[index], n = groupStarts[index + 1] - first
        let input = self.input + first * h, gate = self.gate + first * m, up = self.up + first * m
        for row in 0..<n { (input + row * h).update(from: x + rowToken[first + row] * h, count: h) }
        let w = experts[ExpertKey(layer: layer, expert: order[index])]!  // checked by `compute`
        let output = slab + first * h
        linearPair(input, tokens: n, w.gate, into: gate, w.up, into: up, parallel: parallelInside)
        if let b = w.gateBias { Self.addBias(b, to: gate, rows: n) }
        if let b = w.upBias { Self.addBias(b, to: up, rows: n) }
        switch activation {
        case .swiglu: swiglu(gate: gate, up: up, count: n * m)
        case .clampedSwiglu(let alpha, let limit): clampedSwiglu(gate: gate, up: up, count: n * m, alpha: alpha, limit: limit)
        }
        if parallelInside {
            linear(gate, tokens: n, weight: w.down, into: output)
        } else {
            linearSerial(gate, tokens: n, weight: w.down, into: output)
        }
        if let b = w.downBias { Self.addBias(b, to: output, rows: n) }
    }

    private static func addBias(_ bias: [Float], to values: UnsafeMutablePointer<Float>, rows: Int) {
        bias.withUnsafeBufferPointer { addRowBias($0.baseAddress!, width: $0.count, rows: rows, into: values) }
    }
}
