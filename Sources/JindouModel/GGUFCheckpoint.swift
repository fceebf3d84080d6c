import Crypto
import Foundation
import JindouNumerics
import JindouRouting

// A llama.cpp GGUF file as a weight source. Metadata and tensor names follow llama.cpp's
// conversion (convert_hf_to_gguf.py, gguf-py/gguf/constants.py and tensor_mapping.py) and
// its loader (src/models/qwen3moe.cpp; glm4moe: GGUFGlm4Moe.swift):
//   token_embd, output_norm, output (absent: tied to token_embd),
//   blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, attn_q_norm, attn_k_norm, ffn_norm,
//          ffn_gate_inp, ffn_{gate,up,down}_exps (all experts stacked, [E, out, in])}.
// llama.cpp's converter copies Qwen3 Linear weights unpermuted ([out, in] rows; GGUF lists
// dimensions innermost first), and its qwen3moe rotary is NEOX-style (rotate half) like
// transformers', so tensors are read exactly as stored: nothing is re-encoded, and an
// expert is one slice of the stacked tensor, mapped on its own.

/// llama.cpp's GGUF tensor name for each Hugging Face tensor name Jindou requests
/// (gguf-py/gguf/tensor_mapping.py). One table, used by the loader and `GGUFExport`.
public enum GGUFTensorNames {
    /// Per-layer names: Hugging Face suffix after `model.layers.N.` → GGUF suffix after `blk.N.`.
    static let layerSuffixes: [String: String] = [
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "self_attn.q_proj.bias": "attn_q.bias",
        "self_attn.k_proj.bias": "attn_k.bias",
        "self_attn.v_proj.bias": "attn_v.bias",
        "self_attn.o_proj.bias": "attn_output.bias",
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
        "mlp.gate.weight": "ffn_gate_inp.weight",
        "mlp.gate.e_score_correction_bias": "exp_probs_b.bias",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
        "mlp.shared_experts.gate_proj.weight": "ffn_gate_shexp.weight",
        "mlp.shared_experts.up_proj.weight": "ffn_up_shexp.weight",
        "mlp.shared_experts.down_proj.weight": "ffn_down_shexp.weight",
        // The MTP block's own tensors (the converter's nextn.*; MultiTokenPrediction.swift).
        "enorm.weight": "nextn.enorm.weight",
        "hnorm.weight": "nextn.hnorm.weight",
        "eh_proj.weight": "nextn.eh_proj.weight",
        "shared_head.norm.weight": "nextn.shared_head_norm.weight",
    ]

    /// Where an architecture names a layer tensor differently from `layerSuffixes`.
    static let architectureLayerSuffixes: [Architecture: [String: String]] = [
        .glm4Moe: glm4MoeLayerSuffixes, .gptOss: gptOssLayerSuffixes, .exaoneMoe: exaoneMoeLayerSuffixes, .afmoe: afmoeLayerSuffixes,
        .hunyuanMoe: hunyuanMoeLayerSuffixes, .ernie45Moe: ernie45MoeLayerSuffixes, .qwen3Next: qwen3NextLayerSuffixes, .qwen35Moe: qwen3NextLayerSuffixes,
        .kimiLinear: kimiLinearLayerSuffixes, .bailingHybrid: lingLayerSuffixes,
    ]

    /// The GGUF tensor (and, for a routed expert, its slice of the stacked tensor) holding
    /// Hugging Face tensor `name` in a file of `architecture`; nil for names GGUF has no place for.
    public static func gguf(for name: String, textPrefix: String = "model.",
                            architecture: Architecture = .qwen3Moe) -> (name: String, slice: Int?)? {
        switch name {
        case textPrefix + "embed_tokens.weight": return ("token_embd.weight", nil)
        case textPrefix + "norm.weight": return ("output_norm.weight", nil)
        case WeightNames.lmHead: return ("output.weight", nil)
        default: break
        }
        let layers = textPrefix + "layers."
        guard name.hasPrefix(layers) else { return nil }
        let rest = name.dropFirst(layers.count)
        guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]) else { return nil }
        let suffix = String(rest[rest.index(after: dot)...])
        if let mapped = architectureLayerSuffixes[architecture]?[suffix] ?? layerSuffixes[suffix] ?? deepseek2LayerSuffixes[suffix]
            ?? indexerLayerSuffixes[suffix] { return ("blk.\(layer).\(mapped)", nil) }
        // mlp.experts.E.{gate,up,down}_proj.{weight,bias} → ffn_{gate,up,down}_exps.{weight,bias}, slice E.
        let parts = suffix.split(separator: ".")
        if parts.count == 5, parts[0] == "mlp", parts[1] == "experts", let expert = Int(parts[2]), ["weight", "bias"].contains(parts[4]),
           ["gate_proj", "up_proj", "down_proj"].contains(parts[3]) {
            return ("blk.\(layer).ffn_\(parts[3].dropLast(5))_exps.\(parts[4])", expert)
        }
        return nil
    }
}

/// A GGUF file whose tensors are served under Hugging Face names (see `WeightSource`).
/// Architectures: llama.cpp's `qwen3moe` (Qwen3-MoE), `glm4moe` (GLM4-MoE; GGUFGlm4Moe.swift) and
/// `deepseek2` (DeepSeek-V3, Kimi-K2; GGUFDeepseek2.swift). Tensor types: F32, F16, BF16 and
/// every ggml block format Jindou computes with, mixed freely per tensor (llama-quantize's
/// mixes); split models (`GGUFFile`).
public struct GGUFCheckpoint: WeightSource {
    public let file: GGUFFile
    /// The model the metadata describes (checked against the tensors' shapes on load).
    public let description: ModelDescription

    public var path: String { file.path }

    /// llama.cpp architectures Jindou loads.
    public static let supportedArchitectures = ["qwen3moe", "glm4moe", "deepseek2", "gpt-oss", "minimax-m2", "dots1", "exaone-moe", "afmoe", "hunyuan-moe", "ernie4_5-moe", "deepseek32", "glm-dsa", "qwen3next", "qwen35moe", "kimi-linear", "bailingmoe3"]

    public init(path: String) throws {
        let file = try GGUFFile(path: path)
        self.file = file
        guard let architecture = file.metadata["general.architecture"]?.string else {
            throw GGUFError(path: path, reason: "metadata 'general.architecture' is missing or not a string")
        }
        let metadata = GGUFModelMetadata(file: file, architecture: architecture)
        switch architecture {
        case "qwen3moe": description = try metadata.qwen3Moe()
        case "glm4moe": description = try metadata.glm4Moe()
        case "deepseek2": description = try metadata.deepseek2()
        case "gpt-oss": description = try metadata.gptOss()
        case "minimax-m2": description = try metadata.miniMaxM2()
        case "dots1": description = try metadata.dots1()
        case "exaone-moe": description = try metadata.exaoneMoe()
        case "afmoe": description = try metadata.afmoe()
        case "hunyuan-moe": description = try metadata.hunyuanMoe()
        case "ernie4_5-moe": description = try metadata.ernie45Moe()
        case "deepseek32", "glm-dsa": description = try metadata.sparseAttentionDeepseek()
        case "qwen3next": description = try metadata.qwen3Next()
        case "qwen35moe": description = try metadata.qwen3Next(qwen35: true)
        case "kimi-linear": description = try metadata.kimiLinear()
        case "bailingmoe3": description = try metadata.kimiLinear(ling: true)
        default:
            throw GGUFError(path: path, reason: "architecture '\(architecture)' is not supported (supported: \(Self.supportedArchitectures.joined(separator: ", ")))")
        }
    }

    public func modelDescription() throws -> ModelDescription { description }

    /// Where a request's bytes are: the GGUF tensor, its HF-order shape and file byte range.
    func locate(_ request: TensorRequest) throws -> (info: GGUFTensorInfo, shape: [Int], range: Range<Int>)? {
        guard request.rows == nil, let (name, slice) = GGUFTensorNames.gguf(
            for: request.name, textPrefix: description.textPrefix, architecture: description.architecture) else {
            throw GGUFError(path: path, reason: "Jindou has no GGUF tensor name for '\(request.name)'")
        }
        guard let info = file.tensor(name) else {
            if request.optional { return nil }
            throw GGUFError(path: path, reason: "missing tensor '\(name)' (\(request.name))")
        }
        var dimensions = info.dimensions
        var range = info.fileOffset..<(info.fileOffset + info.byteCount)
        if let slice {
            // Stacked expert matrices (3-D) or their biases (2-D): experts are the outermost dimension.
            guard dimensions.count == (name.hasSuffix(".bias") ? 2 : 3) else {
                throw GGUFError(path: path, reason: "tensor '\(name)' has dimensions \(dimensions); expected \(name.hasSuffix(".bias") ? 2 : 3) (stacked experts)")
            }
            let stacked = dimensions[dimensions.count - 1]
            guard slice < stacked else {
                throw GGUFError(path: path, reason: "tensor '\(name)' stacks \(stacked) experts; expert \(slice) was asked for")
            }
            let sliceBytes = info.byteCount / stacked
            range = (range.lowerBound + slice * sliceBytes)..<(range.lowerBound + (slice + 1) * sliceBytes)
            dimensions.removeLast()
        }
        // GGUF lists dimensions innermost first; Hugging Face shapes are outermost first.
        var shape = Array(dimensions.reversed())
        if let expected = request.shape, expected != shape {
            // The converter squeezes size-1 dimensions (a depthwise conv's [C, 1, K] as [C, K]).
            guard expected.filter({ $0 != 1 }) == shape.filter({ $0 != 1 }) else {
                throw GGUFError(path: path, reason: "tensor '\(name)'\(slice.map { " expert \($0)" } ?? "") has shape \(shape) (outermost first), but the metadata implies \(expected) for \(request.name)")
            }
            shape = expected
        }
        return (info, shape, range)
    }

    /// Maps only the requested tensors' byte ranges (coalesced per part of a split model),
    /// so a worker maps its experts' slices and nothing else.
    public func load(_ requests: [TensorRequest]) throws -> TensorSet {
        var located: [(request: TensorRequest, info: GGUFTensorInfo, shape: [Int], range: Range<Int>, dtype: DType)] = []
        for request in requests {
            guard let (info, shape, range) = try locate(request) else { continue }
            located.append((request, info, shape, range, try file.dtype(of: info)))
        }
        var tensors: [String: TensorView] = [:]
        var regions: [MappedRegion] = []
        for part in Set(located.map(\.info.part)).sorted() {
            let items = located.filter { $0.info.part == part }
            let partPath = file.parts[part].path
            let mapped = try MappedRegion.mapCoalesced(path: partPath, ranges: items.map(\.range))
            for (item, region) in zip(items, mapped.regionOfRange) {
                tensors[item.request.key] = TensorView(name: item.info.name, dtype: item.dtype, shape: item.shape,
                                                       pointer: region.pointer(atFileOffset: item.range.lowerBound), owner: region,
                                                       path: partPath, blockFormat: item.info.type.blockFormat)
            }
            regions += mapped.regions
        }
        return TensorSet(tensors: tensors, regions: regions)
    }

    public func byteCount(of requests: [TensorRequest]) throws -> Int {
        try requests.reduce(0) { $0 + (try locate($1)?.range.count ?? 0) }
    }

    /// SHA-256 of everything before the tensor data: metadata and tensor infos (names,
    /// shapes, types, offsets), not the weights; of every part's header for a split model.
    public func fingerprint() throws -> String {
        var hash = SHA256()
        for part in file.parts { hash.update(bufferPointer: part.header) }
        return hash.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// Typed reads of `{architecture}.…` metadata keys, each error naming the file and key.
struct GGUFModelMetadata {
    let file: GGUFFile
    let architecture: String

    func value(_ key: String) -> GGUFValue? { file.metadata[key] }

    func error(_ key: String, _ reason: String) -> GGUFError {
        GGUFError(path: file.path, reason: "metadata '\(key)' \(reason)")
    }

    /// A non-negative integer; a per-layer array is accepted when all its entries agree.
    func integer(_ key: String, default fallback: Int? = nil) throws -> Int {
        guard let v = value(key) else {
            if let fallback { return fallback }
            throw error(key, "is missing")
        }
        if let list = v.array {
            let values = list.compactMap(\.integer)
            guard values.count == list.count, let first = values.first, values.allSatisfy({ $0 == first }) else {
                throw error(key, "is a per-layer array with differing values; Jindou needs one value")
            }
            return first
        }
        guard let n = v.integer, n >= 0 else { throw error(key, "is not a non-negative integer") }
        return n
    }

    func positive(_ key: String, default fallback: Int? = nil) throws -> Int {
        let n = try integer(key, default: fallback)
        guard n > 0 else { throw error(key, "must be positive, is \(n)") }
        return n
    }

    func number(_ key: String, default fallback: Double? = nil) throws -> Double {
        guard let v = value(key) else {
            if let fallback { return fallback }
            throw error(key, "is missing")
        }
        guard let d = v.double, d.isFinite else { throw error(key, "is not a number") }
        return d
    }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let v = value(key) else { return fallback }
        guard case .bool(let b) = v else { throw error(key, "is not a bool") }
        return b
    }

    func arch(_ suffix: String) -> String { "\(architecture).\(suffix)" }

    /// Decoder layers and trailing MTP blocks: llama.cpp's converter counts the
    /// `nextn_predict_layers` blocks in `block_count`; Jindou never loads them.
    func decoderLayers() throws -> (count: Int, prediction: Int) {
        let blockCount = try positive(arch("block_count"))
        let prediction = try integer(arch("nextn_predict_layers"), default: 0)
        guard prediction < blockCount else {
            throw error(arch("nextn_predict_layers"), "is \(prediction), which leaves no decoder layer of block_count \(blockCount)")
        }
        return (blockCount - prediction, prediction)
    }

    /// Heads, key/value heads, head width and rotary width of standard attention (qwen3moe,
    /// glm4moe), with llama.cpp's defaults; rope scaling must be absent or `none` unless the
    /// caller reads it itself (`readsRopeScaling`, gpt-oss).
    func attentionHeads(hidden: Int, readsRopeScaling: Bool = false) throws -> (heads: Int, kvHeads: Int, headDimension: Int, rotary: Int) {
        let heads = try positive(arch("attention.head_count"))
        let kvHeads = try positive(arch("attention.head_count_kv"), default: heads)
        let headDimension = try positive(arch("attention.key_length"), default: hidden / heads)
        let valueLength = try positive(arch("attention.value_length"), default: headDimension)
        guard valueLength == headDimension else {
            throw error(arch("attention.value_length"), "\(valueLength) differs from attention.key_length \(headDimension)")
        }
        let rotary = try positive(arch("rope.dimension_count"), default: headDimension)
        if !readsRopeScaling, let scaling = value(arch("rope.scaling.type")), scaling.string != "none" {
            throw error(arch("rope.scaling.type"), "'\(scaling.string ?? "?")' is not supported for GGUF yet (supported: none)")
        }
        return (heads, kvHeads, headDimension, rotary)
    }

    /// `expert_weights_scale` as llama.cpp applies it: only when neither 0 (unset) nor 1, so
    /// absent or 0 means a factor of 1; negative is refused.
    func routedScalingFactor() throws -> Float {
        let scale = try number(arch("expert_weights_scale"), default: 0)
        guard scale >= 0 else { throw error(arch("expert_weights_scale"), "must not be negative, is \(scale)") }
        return scale == 0 ? 1 : Float(scale)
    }

    /// Rows of `token_embd.weight`, checked against `vocab_size` when the file has it.
    func vocabularySize() throws -> Int {
        guard let embedding = file.tensor("token_embd.weight"), embedding.dimensions.count == 2 else {
            throw GGUFError(path: file.path, reason: "missing tensor 'token_embd.weight' (or it is not 2-D)")
        }
        let vocabulary = embedding.dimensions[1]
        if let declared = value(arch("vocab_size")), declared.integer != vocabulary {
            throw error(arch("vocab_size"), "is \(declared.integer.map(String.init) ?? "not an integer"), but token_embd.weight has \(vocabulary) rows")
        }
        return vocabulary
    }

    /// The ids of `tokenizer.ggml.{kind}_token_id` for each kind present, without repeats.
    func tokenIDs(_ kinds: [String]) throws -> [Int] {
        var ids: [Int] = []
        for key in kinds.map({ "tokenizer.ggml.\($0)_token_id" }) where value(key) != nil {
            let id = try integer(key)
            if !ids.contains(id) { ids.append(id) }
        }
        return ids
    }

    /// `description` once it validates; otherwise an error naming the file's metadata.
    func validated(_ description: ModelDescription) throws -> ModelDescription {
        do {
            try description.validate(path: file.path)
        } catch CheckpointError.badConfig(_, let field, let reason) {
            throw GGUFError(path: file.path, reason: "metadata does not describe a usable model: \(field) \(reason)")
        }
        return description
    }

    /// `qwen3moe`: llama.cpp's Qwen3-MoE (src/models/qwen3moe.cpp). Every layer there is MoE;
    /// a layer without `ffn_gate_inp` but with `ffn_gate`/`ffn_up`/`ffn_down` is read as a
    /// dense MLP of `feed_forward_length` (Qwen3's `mlp_only_layers`, which `jindouctl
    /// quantize` writes and llama.cpp itself does not load). Routing is softmax top-k,
    /// renormalised unless `expert_weights_norm` is false (llama.cpp always renormalises).
    func qwen3Moe() throws -> ModelDescription {
        let path = file.path
        let layerCount = try positive(arch("block_count"))
        let hidden = try positive(arch("embedding_length"))
        let (heads, kvHeads, headDimension, rotary) = try attentionHeads(hidden: hidden)
        let experts = try positive(arch("expert_count"))
        let used = try positive(arch("expert_used_count"))
        let feedForward = try integer(arch("feed_forward_length"), default: 0)
        let moe = try positive(arch("expert_feed_forward_length"), default: feedForward / used)
        let vocabulary = try vocabularySize()
        let layers: [FeedForwardKind] = try (0..<layerCount).map { l in
            if file.tensor("blk.\(l).ffn_gate_inp.weight") != nil { return .sparse }
            guard file.tensor("blk.\(l).ffn_gate.weight") != nil else {
                throw GGUFError(path: path, reason: "missing tensor 'blk.\(l).ffn_gate_inp.weight' (layer \(l) has neither a router nor a dense MLP)")
            }
            guard feedForward > 0 else { throw error(arch("feed_forward_length"), "is needed for dense layer \(l)") }
            return .dense(intermediateSize: feedForward)
        }
        let bias = file.tensor("blk.0.attn_q.bias") != nil
        return try validated(ModelDescription(
            architecture: .qwen3Moe,
            vocabularySize: vocabulary,
            hiddenSize: hidden,
            attention: AttentionShape(
                heads: heads, keyValueHeads: kvHeads, headDimension: headDimension, rotaryDimension: rotary,
                ropeTheta: try number(arch("rope.freq_base"), default: 10_000),
                queryKeyNorm: true, queryKeyValueBias: bias, outputBias: file.tensor("blk.0.attn_output.bias") != nil,
                slidingWindow: nil),
            rmsNormEpsilon: Float(try number(arch("attention.layer_norm_rms_epsilon"))),
            tieWordEmbeddings: file.tensor("output.weight") == nil,
            layers: layers,
            router: RouterConfiguration(expertCount: experts, expertsPerToken: used, scoring: .softmax,
                                        normalizeTopK: try bool(arch("expert_weights_norm"), default: true)),
            hasCorrectionBias: false,
            moeIntermediateSize: moe,
            sharedExpertIntermediateSize: nil,
            maxPositionEmbeddings: try positive(arch("context_length")),
            eosTokenIDs: try tokenIDs(["eos", "eot"]),
            bosTokenID: try tokenIDs(["bos"]).first,
            declaredDType: nil))
    }
}
