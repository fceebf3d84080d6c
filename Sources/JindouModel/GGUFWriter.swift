import Foundation
import JindouNumerics

/// Writes GGUF v3 files (the layout `GGUFFile` reads), streaming tensor data so files
/// larger than memory can be written. The file is written to `path.partial` and renamed
/// when complete, so a failed write never leaves a file that looks finished.
public struct GGUFWriter {
    /// A metadata value with its GGUF type.
    public enum Value {
        case u32(UInt32)
        case i32(Int32)
        case u64(UInt64)
        case f32(Float)
        case bool(Bool)
        case string(String)
        case strings([String])
        case i32s([Int32])
        case bools([Bool])
    }

    /// A tensor: dimensions innermost first, and a producer that writes exactly `byteCount` bytes.
    public struct Tensor {
        public var name: String
        public var dimensions: [Int]
        public var type: GGMLType
        public var produce: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void

        public var byteCount: Int {
            dimensions.reduce(1, *) / type.block.size * type.block.bytes
        }

        public init(name: String, dimensions: [Int], type: GGMLType,
                    produce: @escaping (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) {
            self.name = name
            self.dimensions = dimensions
            self.type = type
            self.produce = produce
        }
    }

    public var metadata: [(String, Value)] = []
    public var tensors: [Tensor] = []
    public let alignment = 32

    public init() {}

    /// Writes the file; `progress(tensorIndex)` after each tensor.
    public func write(to path: String, progress: (Int) -> Void = { _ in }) throws {
        let partial = path + ".partial"
        guard FileManager.default.createFile(atPath: partial, contents: nil) else {
            throw GGUFError(path: path, reason: "cannot create \(partial)")
        }
        let handle: FileHandle
        do { handle = try FileHandle(forWritingTo: URL(fileURLWithPath: partial)) } catch {
            throw GGUFError(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
        var buffer = Buffer(handle: handle, path: path)
        do {
            buffer.bytes(Array("GGUF".utf8))
            buffer.u32(3)
            buffer.u64(UInt64(tensors.count))
            buffer.u64(UInt64(metadata.count))
            for (key, value) in metadata {
                buffer.string(key)
                buffer.value(value)
            }
            var offset = 0
            for tensor in tensors {
                buffer.string(tensor.name)
                buffer.u32(UInt32(tensor.dimensions.count))
                for d in tensor.dimensions { buffer.u64(UInt64(d)) }
                buffer.u32(tensor.type.rawValue)
                buffer.u64(UInt64(offset))
                offset += (tensor.byteCount + alignment - 1) / alignment * alignment
            }
            try buffer.pad(to: alignment)
            for (index, tensor) in tensors.enumerated() {
                var written = 0
                try tensor.produce { chunk in
                    written += chunk.count
                    try buffer.raw(chunk)
                }
                guard written == tensor.byteCount else {
                    throw GGUFError(path: path, reason: "tensor '\(tensor.name)' produced \(written) bytes, expected \(tensor.byteCount)")
                }
                try buffer.pad(to: alignment)
                progress(index)
            }
            try buffer.flush()
            try handle.synchronize()
            try handle.close()
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            try FileManager.default.moveItem(atPath: partial, toPath: path)
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
    }

    /// Little-endian output, buffered in 8 MiB chunks.
    struct Buffer {
        let handle: FileHandle
        let path: String
        var pending: [UInt8] = []
        var position = 0

        mutating func bytes(_ b: [UInt8]) { pending += b; position += b.count }
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes(Array($0)) } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes(Array($0)) } }
        mutating func string(_ s: String) { u64(UInt64(s.utf8.count)); bytes(Array(s.utf8)) }
        mutating func value(_ value: Value) {
            switch value {
            case .u32(let v): u32(4); u32(v)
            case .i32(let v): u32(5); u32(UInt32(bitPattern: v))
            case .u64(let v): u32(10); u64(v)
            case .f32(let v): u32(6); u32(v.bitPattern)
            case .bool(let v): u32(7); bytes([v ? 1 : 0])
            case .string(let s): u32(8); string(s)
            case .strings(let list):
                u32(9); u32(8); u64(UInt64(list.count))
                for s in list { string(s) }
            case .i32s(let list):
                u32(9); u32(5); u64(UInt64(list.count))
                for v in list { u32(UInt32(bitPattern: v)) }
            case .bools(let list):
                u32(9); u32(7); u64(UInt64(list.count))
                bytes(list.map { $0 ? 1 : 0 })
            }
        }
        mutating func raw(_ chunk: UnsafeRawBufferPointer) throws {
            pending.append(contentsOf: chunk)
            position += chunk.count
            if pending.count >= 8 << 20 { try flush() }
        }
        mutating func pad(to alignment: Int) throws {
            let padding = (alignment - position % alignment) % alignment
            bytes([UInt8](repeating: 0, count: padding))
            try flush()
        }
        mutating func flush() throws {
            guard !pending.isEmpty else { return }
            do { try handle.write(contentsOf: pending) } catch {
                throw GGUFError(path: path, reason: "write failed: \(error.localizedDescription)")
            }
            pending.removeAll(keepingCapacity: true)
        }
    }
}

/// `jindouctl quantize`: a Hugging Face checkpoint as a GGUF file with llama.cpp's tensor names
/// and metadata for its architecture (`qwen3moe` for Qwen3-MoE, `glm4moe` for GLM4-MoE:
/// GGUFGlm4Moe.swift, `deepseek2` for DeepSeek-V3 and Kimi-K2: GGUFDeepseek2.swift), weights
/// re-encoded as llama-quantize encodes them (reference encoders, no importance matrix), each
/// tensor in the type the `Recipe` gives it:
/// - `.mix`: llama-quantize's mixes (Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, IQ4_XS, …) with its
///   per-tensor rules (`QuantizationMix`), as if llama-quantize ran on the converter's F32 file;
/// - `.experts(format, embedding)`: the routed experts (stacked `ffn_*_exps`) in `format`, every
///   other matrix Q8_0 (F32 where a width is not whole blocks, as `DecoderModel`'s `denseFormat`
///   leaves it) and the token embedding in `embedding` (nil = F32) — what a worker started with
///   `--expert-format` computes, so the file equals the in-process model bit for bit.
/// Norms, the router (llama-quantize keeps `ffn_gate_inp` unquantised) and `exp_probs_b` are
/// F32. `tokenizer` is the `tokenizer.*` metadata to write; without it the vocabulary is
/// written as `tokenizer.ggml.model = none` with `vocab_size` (llama.cpp then runs, e.g.
/// llama-bench, without a tokenizer).
///
/// Beyond what llama.cpp's qwen3moe reads, and ignored by it: `expert_weights_norm` (false
/// for `norm_topk_prob: false`; llama.cpp always renormalises) and dense layers
/// (`mlp_only_layers`) as `blk.N.ffn_{gate,up,down}` — llama.cpp refuses such a file, Jindou
/// loads it. glm4moe files are what the converter writes with `--no-mtp`: MTP layers, which
/// Jindou never loads, are not written. Block-FP8 checkpoints are refused: Jindou reads them,
/// but does not dequantise them into a file.
public enum GGUFExport {
    /// The architectures `model` writes.
    public static let supportedArchitectures: [Architecture] = [.qwen3Moe, .glm4Moe, .deepseekV3]

    /// Which type each tensor is written in.
    public enum Recipe: Sendable {
        case mix(QuantizationMix)
        case experts(BlockFormat, embedding: BlockFormat?)
        /// Every matrix as F32, F16 or BF16 (what llama.cpp's converter writes with
        /// `--outtype`, and the input llama-quantize and llama-imatrix take).
        case float(GGMLType)

        /// `general.file_type`.
        var fileType: Int {
            switch self {
            case .float(let type): type == .f32 ? 0 : type == .f16 ? 1 : 32
            case .mix(let mix): mix.fileType
            case .experts(let format, _): format == .q8_0 ? 7 : QuantizationMix.allCases.first { $0.defaultType.blockFormat == format }?.fileType ?? 7
            }
        }
    }

    /// `importance`: an importance matrix (llama-imatrix), used as llama-quantize's
    /// `--imatrix` uses it: it weighs each encoder's rounding errors and changes a few rules.
    public static func model(checkpoint: Checkpoint, description d: ModelDescription, recipe: Recipe,
                             importance: ImportanceMatrix? = nil, tokenizer: [(String, GGUFWriter.Value)]? = nil,
                             name: String) throws -> GGUFWriter {
        let arch: String
        switch d.architecture {
        case .qwen3Moe: arch = "qwen3moe"
        case .glm4Moe: arch = "glm4moe"
        case .deepseekV3: arch = "deepseek2"
        default:
            throw GGUFError(path: checkpoint.directory, reason: "GGUF export supports \(supportedArchitectures.map(\.rawValue).joined(separator: ", ")) so far, not \(d.architecture.rawValue)")
        }
        guard d.weightQuantization == nil else {
            throw GGUFError(path: checkpoint.directory, reason: "GGUF export reads bf16/f16/f32 weights; this checkpoint is block-FP8 (quantization_config), which it does not dequantise")
        }
        guard d.expertStorage == .perExpert, d.vision == nil else {
            throw GGUFError(path: checkpoint.directory, reason: "GGUF export needs a text-only checkpoint with per-expert tensors")
        }
        if case .experts(let expertFormat, _) = recipe {
            for width in [d.hiddenSize, d.moeIntermediateSize] where width % expertFormat.blockSize != 0 {
                throw GGUFError(path: checkpoint.directory, reason: "\(expertFormat.rawValue) needs widths that are multiples of \(expertFormat.blockSize); hidden \(d.hiddenSize), expert intermediate \(d.moeIntermediateSize)")
            }
        }
        var writer = GGUFWriter()
        writer.metadata = [
            ("general.architecture", .string(arch)),
            ("general.name", .string(name)),
            ("general.file_type", .u32(UInt32(recipe.fileType))),
            ("general.quantization_version", .u32(2)),
        ]
        switch d.architecture {
        case .deepseekV3: writer.metadata += try deepseek2Metadata(d, path: checkpoint.directory)
        default:
            guard d.attention.ropeScaling == .none else {
                throw GGUFError(path: checkpoint.directory, reason: "GGUF export does not write rope scaling (yarn) for \(arch) yet")
            }
            writer.metadata += qwen3MoeMetadata(d, architecture: arch)
            if d.architecture == .glm4Moe { writer.metadata += try glm4MoeMetadata(d, path: checkpoint.directory) }
        }
        writer.metadata += tokenizer ?? [("tokenizer.ggml.model", .string("none"))]
        if let importance { writer.metadata += importance.metadata }
        var tensors = TensorWriter(checkpoint: checkpoint, description: d, importance: importance)
        try tensors.matrix(d.embeddingName)
        for l in 0..<d.layerCount {
            let p = d.layerPrefix(l), b = "blk.\(l)."
            try tensors.vector(p + "input_layernorm.weight")
            switch d.architecture {
            case .deepseekV3:
                try tensors.latentAttention(layer: l)
            default:
                let a = d.attention
                for projection in ["q", "k", "v", "o"] { try tensors.matrix(p + "self_attn.\(projection)_proj.weight") }
                if a.queryKeyValueBias { for projection in ["q", "k", "v"] { try tensors.vector(p + "self_attn.\(projection)_proj.bias") } }
                if a.outputBias { try tensors.vector(p + "self_attn.o_proj.bias") }
                if a.queryKeyNorm { for norm in ["q_norm", "k_norm"] { try tensors.vector(p + "self_attn.\(norm).weight") } }
            }
            try tensors.vector(p + "post_attention_layernorm.weight")
            guard d.sparseLayers.contains(l) else {
                for projection in ["gate", "up", "down"] { try tensors.matrix(p + "mlp.\(projection)_proj.weight") }
                continue
            }
            try tensors.matrix(d.routerName(layer: l), role: .router)
            if d.hasCorrectionBias { try tensors.vector(d.correctionBiasName(layer: l)) }
            let e = d.expertCount, h = d.hiddenSize, i = d.moeIntermediateSize
            for (projection, dimensions) in [("gate", [h, i, e]), ("up", [h, i, e]), ("down", [i, h, e])] {
                let checkpoint = checkpoint, name = b + "ffn_\(projection)_exps.weight"
                tensors.append(.init(name: name, dimensions: dimensions, role: .experts, source: .f32) { type in
                    { write in
                        // One expert at a time: only its tensors are mapped.
                        for expert in 0..<e {
                            let key = ExpertKey(layer: l, expert: expert)
                            let shard = try ExpertShard(description: d, checkpoint: checkpoint, keys: [key])
                            let weights = shard.experts[key]!
                            let m = projection == "gate" ? weights.gate : projection == "up" ? weights.up : weights.down
                            try encodeRows(m, type: type, importance: try importance?.importance(for: name, columns: m.columns, expert: expert),
                                           write: write)
                        }
                    }
                })
            }
            if d.sharedExpertIntermediateSize != nil {
                for projection in ["gate", "up", "down"] { try tensors.matrix(p + "mlp.shared_experts.\(projection)_proj.weight") }
            }
        }
        try tensors.vector(d.finalNormName)
        if !d.tieWordEmbeddings { try tensors.matrix(WeightNames.lmHead) }
        writer.tensors = try tensors.typed(recipe, model: QuantizationMix.Model(
            layers: d.layerCount, experts: d.expertCount, heads: d.attention.heads, keyValueHeads: d.attention.keyValueHeads))
        return writer
    }

    /// llama.cpp's `qwen3moe` keys (convert_hf_to_gguf.py `Qwen3MoeModel`), also the ones
    /// `glm4moe` shares (under its own prefix).
    static func qwen3MoeMetadata(_ d: ModelDescription, architecture arch: String) -> [(String, GGUFWriter.Value)] {
        let a = d.attention
        let denseIntermediate = d.layers.compactMap { if case .dense(let size) = $0 { size } else { nil } }.first
        return [
            ("\(arch).context_length", .u32(UInt32(d.maxPositionEmbeddings))),
            ("\(arch).embedding_length", .u32(UInt32(d.hiddenSize))),
            ("\(arch).block_count", .u32(UInt32(d.layerCount))),
            ("\(arch).feed_forward_length", .u32(UInt32(denseIntermediate ?? d.moeIntermediateSize * d.router.expertsPerToken))),
            ("\(arch).attention.head_count", .u32(UInt32(a.heads))),
            ("\(arch).attention.head_count_kv", .u32(UInt32(a.keyValueHeads))),
            ("\(arch).attention.key_length", .u32(UInt32(a.headDimension))),
            ("\(arch).attention.value_length", .u32(UInt32(a.headDimension))),
            ("\(arch).rope.freq_base", .f32(Float(a.ropeTheta))),
            ("\(arch).attention.layer_norm_rms_epsilon", .f32(d.rmsNormEpsilon)),
            ("\(arch).expert_count", .u32(UInt32(d.expertCount))),
            ("\(arch).expert_used_count", .u32(UInt32(d.router.expertsPerToken))),
            ("\(arch).expert_feed_forward_length", .u32(UInt32(d.moeIntermediateSize))),
            ("\(arch).expert_weights_norm", .bool(d.router.normalizeTopK)),
            ("\(arch).vocab_size", .u32(UInt32(d.vocabularySize))),
        ]
    }

    /// The tensors of a file being exported, each read from the checkpoint (and encoded) only
    /// when the writer asks for its bytes; their types are chosen once all are known
    /// (`typed`), since llama-quantize's rules count tensors across the whole model.
    struct TensorWriter {
        /// What a tensor is, for the recipes.
        enum Role { case vector, matrix, router, experts, latentSplit }

        /// A tensor before its type is chosen: `produce(type)` writes it in `type`.
        struct Planned {
            var name: String
            var dimensions: [Int]
            var role: Role
            /// The checkpoint's type (what "not quantised" keeps).
            var source: GGMLType
            var produce: (GGMLType) -> (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void
        }

        let checkpoint: Checkpoint
        let description: ModelDescription
        let importance: ImportanceMatrix?
        private(set) var planned: [Planned] = []

        init(checkpoint: Checkpoint, description: ModelDescription, importance: ImportanceMatrix? = nil) {
            self.checkpoint = checkpoint
            self.description = description
            self.importance = importance
        }

        mutating func append(_ tensor: Planned) { planned.append(tensor) }

        /// Checkpoint tensor `hf`, mapped.
        static func plain(_ hf: String, _ checkpoint: Checkpoint) throws -> TensorView {
            let set = try checkpoint.load([TensorRequest(hf, shape: nil)])
            guard let view = set[hf] else { throw CheckpointError.missingTensor(tensor: hf, searched: []) }
            return view
        }

        func ggufName(_ hf: String) -> String {
            GGUFTensorNames.gguf(for: hf, textPrefix: description.textPrefix, architecture: description.architecture)!.name
        }

        /// A vector (norm, bias), always F32.
        mutating func vector(_ hf: String) throws {
            let checkpoint = checkpoint
            let count = try Self.plain(hf, checkpoint).elementCount
            planned.append(.init(name: ggufName(hf), dimensions: [count], role: .vector, source: .f32) { _ in
                { write in try Self.plain(hf, checkpoint).floats().withUnsafeBytes { try write($0) } }
            })
        }

        /// A matrix, in whatever type the recipe gives it.
        mutating func matrix(_ hf: String, role: Role = .matrix) throws {
            let view = try Self.plain(hf, checkpoint)
            guard view.shape.count == 2 else { throw CheckpointError.shapeMismatch(path: view.path, tensor: hf, expected: [-1, -1], actual: view.shape) }
            let (rows, columns) = (view.shape[0], view.shape[1])
            let checkpoint = checkpoint, name = ggufName(hf), importance = importance
            planned.append(.init(name: name, dimensions: [columns, rows], role: role, source: .f32) { type in
                { write in
                    // llama-imatrix records no token embedding (not a matmul input); others must fit.
                    try encodeRows(try Self.plain(hf, checkpoint).matrix(), type: type,
                                   importance: try importance?.importance(for: name, columns: columns, expert: nil), write: write)
                }
            })
        }

        /// The writer's tensors, each in the type `recipe` chooses.
        func typed(_ recipe: Recipe, model: QuantizationMix.Model) throws -> [GGUFWriter.Tensor] {
            let types: [GGMLType]
            switch recipe {
            case .mix(let mix):
                let chosen = try mix.types(of: planned.map { .init(name: $0.name, dimensions: $0.dimensions) }, model: model,
                                           importance: importance != nil)
                types = zip(planned, chosen).map { $1 ?? $0.source }
            case .float(let type):
                types = planned.map { tensor in
                    switch tensor.role {
                    case .vector, .router: .f32
                    default: type
                    }
                }
            case .experts(let format, let embedding):
                types = planned.map { tensor in
                    switch tensor.role {
                    case .vector, .router: return .f32
                    case .latentSplit: return tensor.source
                    case .experts: return GGMLType(format)
                    case .matrix:
                        let wanted = tensor.name == "token_embd.weight" ? embedding : .q8_0
                        return wanted.flatMap { tensor.dimensions[0] % $0.blockSize == 0 ? GGMLType($0) : nil } ?? .f32
                    }
                }
            }
            return zip(planned, types).map { tensor, type in
                GGUFWriter.Tensor(name: tensor.name, dimensions: tensor.dimensions, type: type, produce: tensor.produce(type))
            }
        }
    }

    /// Rows of `m` written as `type` (a block format, F32, F16 or BF16), in batches, weighed
    /// by `importance` (one value per column) for the block formats whose encoders use it.
    static func encodeRows(_ m: WeightMatrix, type: GGMLType, importance: [Float]? = nil,
                           write: (UnsafeRawBufferPointer) throws -> Void) throws {
        let format = type.blockFormat
        guard format != nil || [GGMLType.f32, .f16, .bf16].contains(type) else {
            throw GGUFError(path: type.name, reason: "Jindou cannot write \(type) tensors")
        }
        if let format, !format.canQuantize {
            throw GGUFError(path: type.name, reason: "Jindou has no \(type) encoder")
        }
        // 64 rows per task, a batch of tasks per write: the Q4_K encoder's search is slow,
        // so the rows are encoded on every kernel thread.
        let task = 64, chunk = task * Parallelism.threads * 2
        let rowBytes = format?.rowBytes(columns: m.columns) ?? m.columns * type.bytesPerBlock
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk * rowBytes, alignment: 64)
        defer { buffer.deallocate() }
        for start in stride(from: 0, to: m.rows, by: chunk) {
            let rows = start..<min(m.rows, start + chunk)
            parallelFor((rows.count + task - 1) / task) { t in
                let part = (rows.lowerBound + t * task)..<min(rows.upperBound, rows.lowerBound + (t + 1) * task)
                let out = buffer + (part.lowerBound - rows.lowerBound) * rowBytes
                if let format {
                    if let importance {
                        importance.withUnsafeBufferPointer { m.encodeRows(part, as: format, importance: $0, into: out) }
                    } else {
                        m.encodeRows(part, as: format, into: out)
                    }
                } else if type == .f32 {
                    m.widenRows(part, into: out.bindMemory(to: Float.self, capacity: part.count * m.columns))
                } else {
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: m.columns) { row in
                        for (i, r) in part.enumerated() {
                            m.widenRows(r..<(r + 1), into: row.baseAddress!)
                            let target = (out + i * rowBytes).bindMemory(to: UInt16.self, capacity: m.columns)
                            for c in 0..<m.columns { target[c] = type == .f16 ? Float16(row[c]).bitPattern : BFloat16Conversion.bits(from: row[c]) }
                        }
                    }
                }
            }
            try write(UnsafeRawBufferPointer(start: buffer, count: rows.count * rowBytes))
        }
    }
}
