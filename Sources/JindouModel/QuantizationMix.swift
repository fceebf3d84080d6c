import Foundation

// llama-quantize's per-tensor type rules (llama.cpp src/llama-quant.cpp:
// `tensor_allows_quantization`, `llama_tensor_get_type_impl`, `tensor_type_fallback`,
// `llama_ftype_get_default_type`), so `jindouctl quantize --to Q4_K_M` chooses for every
// tensor the type llama-quantize would choose on the same model without an importance
// matrix. The rules are llama.cpp's facts; the code is Jindou's own. Architecture-specific
// branches for models Jindou does not write (Falcon, 70B dense Llama, GLM-5-next,
// Bailing-MoE3) are left out.

/// A llama.cpp file type (`llama_ftype`): a default ggml type plus the rules that move some
/// tensors to other types (Q4_K_M: `attn_v` and some `ffn_down` in Q6_K, `output` Q6_K, …).
public enum QuantizationMix: String, CaseIterable, Sendable {
    case q4_0 = "Q4_0", q4_1 = "Q4_1", q5_0 = "Q5_0", q5_1 = "Q5_1", q8_0 = "Q8_0"
    case q2_K = "Q2_K", q3_K_S = "Q3_K_S", q3_K_M = "Q3_K_M", q3_K_L = "Q3_K_L"
    case q4_K_S = "Q4_K_S", q4_K_M = "Q4_K_M", q5_K_S = "Q5_K_S", q5_K_M = "Q5_K_M", q6_K = "Q6_K"
    case iq4_nl = "IQ4_NL", iq4_xs = "IQ4_XS"

    /// `llama_ftype` (what `general.file_type` records).
    public var fileType: Int {
        switch self {
        case .q4_0: 2
        case .q4_1: 3
        case .q8_0: 7
        case .q5_0: 8
        case .q5_1: 9
        case .q2_K: 10
        case .q3_K_S: 11
        case .q3_K_M: 12
        case .q3_K_L: 13
        case .q4_K_S: 14
        case .q4_K_M: 15
        case .q5_K_S: 16
        case .q5_K_M: 17
        case .q6_K: 18
        case .iq4_nl: 25
        case .iq4_xs: 30
        }
    }

    /// The mix named as llama-quantize names it (case-insensitive; `Q4_K` = Q4_K_M, `Q5_K` =
    /// Q5_K_M, `Q3_K` = Q3_K_M as its aliases say).
    public init?(name: String) {
        let upper = name.uppercased()
        let aliases = ["Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "Q3_K": "Q3_K_M"]
        guard let mix = QuantizationMix(rawValue: aliases[upper] ?? upper) else { return nil }
        self = mix
    }

    /// `llama_ftype_get_default_type`.
    public var defaultType: GGMLType {
        switch self {
        case .q4_0: GGMLType(rawValue: 2)!
        case .q4_1: GGMLType(rawValue: 3)!
        case .q5_0: GGMLType(rawValue: 6)!
        case .q5_1: GGMLType(rawValue: 7)!
        case .q8_0: .q8_0
        case .q2_K: .q2_K
        case .q3_K_S, .q3_K_M, .q3_K_L: .q3_K
        case .q4_K_S, .q4_K_M: .q4_K
        case .q5_K_S, .q5_K_M: .q5_K
        case .q6_K: .q6_K
        case .iq4_nl: .iq4_NL
        case .iq4_xs: .iq4_XS
        }
    }

    /// A tensor as the rules see it: its GGUF name and dimensions (innermost first).
    public struct Tensor: Sendable, Equatable {
        public var name: String
        public var dimensions: [Int]
        public init(name: String, dimensions: [Int]) {
            self.name = name
            self.dimensions = dimensions
        }
    }

    /// The model facts the rules read.
    public struct Model: Sendable {
        /// `block_count` (decoder layers plus MTP blocks).
        public var layers: Int
        public var experts: Int
        public var heads: Int
        public var keyValueHeads: Int
        public init(layers: Int, experts: Int, heads: Int, keyValueHeads: Int) {
            self.layers = layers
            self.experts = experts
            self.heads = heads
            self.keyValueHeads = keyValueHeads
        }
        var groupedQueryFactor: Int { keyValueHeads == 0 ? 0 : heads / keyValueHeads }
    }

    /// The type of every tensor in `tensors` (same order) quantised from floats, or nil where
    /// llama-quantize keeps a tensor as it is (norms, biases, routers). The counters behind
    /// "every n-th `attn_v`" run in llama.cpp's tensor order (by block, then by name),
    /// whatever order `tensors` is in.
    public func types(of tensors: [Tensor], model: Model, importance: Bool = false) throws -> [GGMLType?] {
        let order = tensors.indices.sorted { Self.loaderOrder(tensors[$0].name, tensors[$1].name) }
        var state = State(valueTensors: tensors.filter { Category($0.name).isAttentionValue }.count,
                          tiedEmbeddings: !tensors.contains { $0.name == "output.weight" }, importance: importance)
        var result = [GGMLType?](repeating: nil, count: tensors.count)
        for i in order {
            let tensor = tensors[i]
            guard Self.allowsQuantization(tensor) else { continue }
            var type = try rule(tensor, category: Category(tensor.name), model: model, state: &state)
            type = try Self.fallback(type, columns: tensor.dimensions[0], tensor: tensor.name)
            result[i] = type
        }
        return result
    }

    // MARK: - The rules

    /// `tensor_category` from the name.
    enum Category: Equatable {
        case tokenEmbedding, attentionQuery, attentionValue, attentionKey, attentionQKV, attentionKVB, attentionOutput
        case feedForwardUp, feedForwardGate, feedForwardDown, output, other

        init(_ name: String) {
            if name == "output.weight" { self = .output; return }
            if name == "token_embd.weight" || name == "per_layer_token_embd.weight" { self = .tokenEmbedding; return }
            let patterns: [(String, Category)] = [
                ("attn_qkv.weight", .attentionQKV), ("attn_kv_b.weight", .attentionKVB), ("attn_v.weight", .attentionValue),
                ("attn_k.weight", .attentionKey), ("attn_q.weight", .attentionQuery), ("attn_output.weight", .attentionOutput),
                ("ffn_up", .feedForwardUp), ("ffn_gate", .feedForwardGate), ("ffn_down", .feedForwardDown),
            ]
            self = patterns.first { name.contains($0.0) }?.1 ?? .other
        }

        var isAttentionValue: Bool { [.attentionValue, .attentionQKV, .attentionKVB].contains(self) }
    }

    struct State {
        let valueTensors: Int
        let tiedEmbeddings: Bool
        /// llama-quantize's `has_imatrix`.
        let importance: Bool
        var valueIndex = 0
    }

    /// llama.cpp's `weight_name_comparer`: by block number (`blk.N.`, others first), then name.
    static func loaderOrder(_ a: String, _ b: String) -> Bool {
        let (la, lb) = (blockNumber(a) ?? -1, blockNumber(b) ?? -1)
        return la != lb ? la < lb : a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    static func blockNumber(_ name: String) -> Int? {
        guard name.hasPrefix("blk.") else { return nil }
        return Int(name.dropFirst(4).prefix { $0.isNumber })
    }

    /// `tensor_allows_quantization` for the tensors of the architectures Jindou writes.
    static func allowsQuantization(_ tensor: Tensor) -> Bool {
        let name = tensor.name
        return tensor.dimensions.count >= 2 && name.hasSuffix("weight") && !name.contains("_norm.weight")
            && !name.contains("ffn_gate_inp.weight")
    }

    /// `use_more_bits`: the first and last eighth of layers, and every third in between.
    static func useMoreBits(_ layer: Int, _ layers: Int) -> Bool {
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
    }

    /// `llama_tensor_get_type_impl` for the mixes above (no importance matrix).
    func rule(_ tensor: Tensor, category: Category, model: Model, state: inout State) throws -> GGMLType {
        var type = defaultType
        let columns = tensor.dimensions[0]
        let eightExperts = model.experts == 8
        if category == .output || (state.tiedEmbeddings && category == .tokenEmbedding) {
            if columns % type.blockSize != 0 {
                type = .q8_0
            } else if type != .q8_0 {
                type = .q6_K
            }
        } else if category == .tokenEmbedding {
            // Keeps the default type for these mixes.
        } else if category.isAttentionValue {
            switch self {
            case .q2_K: type = model.groupedQueryFactor >= 4 ? .q4_K : .q3_K
            case .q3_K_M: type = state.valueIndex < 2 ? .q5_K : .q4_K
            case .q3_K_L: type = .q5_K
            case .iq4_nl, .iq4_xs: if model.groupedQueryFactor >= 4 { type = .q5_K }
            case .q4_K_M, .q5_K_M: if Self.useMoreBits(state.valueIndex, state.valueTensors) { type = .q6_K }
            case .q4_K_S: if state.valueIndex < 4 { type = .q5_K }
            default: break
            }
            if eightExperts { type = .q8_0 }
            state.valueIndex += 1
        } else if category == .attentionKey {
            if eightExperts { type = .q8_0 }
        } else if category == .feedForwardDown {
            let layer = try self.layer(of: tensor.name, model: model)
            let n = model.layers
            switch self {
            case .q2_K: type = .q3_K
            case .q3_K_M: type = layer < n / 16 ? .q5_K : .q4_K
            case .q3_K_L: type = .q5_K
            case .q4_K_M: if Self.useMoreBits(layer, n) { type = .q6_K }
            case .iq4_nl, .iq4_xs: if layer < n / 8 && !state.importance { type = .q5_K }
            case .q5_K_M: if Self.useMoreBits(layer, n) { type = .q6_K }
            case .q4_K_S: if layer < n / 8 { type = .q5_K }
            // Guards the first ffn_down layers when an imatrix makes Q4_0/Q5_0 aggressive.
            case .q4_0: if state.importance && layer < n / 8 { type = GGMLType(rawValue: 3)! }
            case .q5_0: if state.importance && layer < n / 8 { type = GGMLType(rawValue: 7)! }
            default: break
            }
        } else if category == .attentionOutput {
            if eightExperts {
                if [.q2_K, .q3_K_S, .q3_K_M, .iq4_nl, .q4_K_S, .q4_K_M, .iq4_xs].contains(self) { type = .q5_K }
            } else {
                switch self {
                case .q2_K: type = .q3_K
                case .q3_K_M: type = .q4_K
                case .q3_K_L: type = .q5_K
                default: break
                }
            }
        } else if category == .attentionQKV {
            switch self {
            case .q3_K_M, .q3_K_L: type = .q4_K
            case .q4_K_M: type = .q5_K
            case .q5_K_M: type = .q6_K
            default: break
            }
        }
        return type
    }

    /// The block of an `ffn_down` tensor (`layer_info`: parsed from the name for MoE models).
    func layer(of name: String, model: Model) throws -> Int {
        guard let layer = Self.blockNumber(name), (0..<model.layers).contains(layer) else {
            throw GGUFError(path: name, reason: "cannot tell the layer of '\(name)' (expected blk.N. with N < \(model.layers))")
        }
        return layer
    }

    /// `tensor_type_fallback`: a type whose blocks do not divide the rows' width becomes a
    /// 32-wide type (then F16 if even that does not divide).
    static func fallback(_ type: GGMLType, columns: Int, tensor: String) throws -> GGMLType {
        guard columns % type.blockSize != 0 else { return type }
        let fallback: GGMLType
        switch type.name {
        case "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS": fallback = .iq4_NL
        case "Q2_K", "Q3_K", "TQ1_0", "TQ2_0": fallback = GGMLType(rawValue: 2)!
        case "Q4_K": fallback = GGMLType(rawValue: 6)!
        case "Q5_K": fallback = GGMLType(rawValue: 7)!
        case "Q6_K": fallback = .q8_0
        default:
            guard type.blockSize <= 32 else { throw GGUFError(path: tensor, reason: "no fallback type for \(type) rows of \(columns)") }
            fallback = type
        }
        return columns % fallback.blockSize == 0 ? fallback : .f16
    }
}

extension GGMLType {
    public static let q2_K = GGMLType(rawValue: 10)!
    public static let q3_K = GGMLType(rawValue: 11)!
    public static let q5_K = GGMLType(rawValue: 13)!
    public static let q6_K = GGMLType(rawValue: 14)!
    public static let iq4_NL = GGMLType(rawValue: 20)!
    public static let iq4_XS = GGMLType(rawValue: 23)!
}
