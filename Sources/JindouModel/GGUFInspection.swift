import Foundation

/// What a GGUF model holds: its architecture, parts, and the tensors of each ggml type
/// (`jindouctl inspect`). llama-quantize's mixes put several types in one file (Q4_K_M:
/// Q4_K with some Q6_K; fallbacks such as Q5_0 for rows that are not whole super-blocks),
/// so the census is per type, not one "file type".
public struct GGUFInspection: Codable, Sendable, Equatable {
    public struct TypeCount: Codable, Sendable, Equatable {
        /// ggml's type name, e.g. "Q4_K".
        public var type: String
        public var tensors: Int
        public var elements: Int
        public var bytes: Int
        public var bitsPerWeight: Double
        /// Whether Jindou computes with this type.
        public var readable: Bool

        enum CodingKeys: String, CodingKey {
            case type, tensors, elements, bytes, readable
            case bitsPerWeight = "bits_per_weight"
        }
    }

    public var path: String
    public var parts: [String]
    public var version: Int
    public var architecture: String?
    public var name: String?
    /// `general.file_type` as llama.cpp names it (`llama_ftype`), e.g. "MOSTLY_Q4_K_M".
    public var fileType: String?
    public var tensorCount: Int
    public var elements: Int
    public var bytes: Int
    public var bitsPerWeight: Double
    /// Most bytes first.
    public var types: [TypeCount]
    /// Whether Jindou loads this architecture.
    public var architectureSupported: Bool
    /// Tensors of types Jindou does not compute with (empty when it can load every tensor).
    public var unreadableTensors: [String]

    enum CodingKeys: String, CodingKey {
        case path, parts, version, architecture, name, elements, bytes, types
        case fileType = "file_type"
        case tensorCount = "tensor_count"
        case bitsPerWeight = "bits_per_weight"
        case architectureSupported = "architecture_supported"
        case unreadableTensors = "unreadable_tensors"
    }

    public init(_ file: GGUFFile) {
        path = file.path
        parts = file.parts.map(\.path)
        version = Int(file.version)
        architecture = file.metadata["general.architecture"]?.string
        name = file.metadata["general.name"]?.string
        fileType = file.metadata["general.file_type"]?.integer.map { Self.fileTypeNames[$0] ?? "unknown (\($0))" }
        tensorCount = file.tensors.count
        var counts: [GGMLType: TypeCount] = [:]
        for tensor in file.tensors {
            let elements = tensor.dimensions.reduce(1, *)
            var entry = counts[tensor.type] ?? TypeCount(type: tensor.type.name, tensors: 0, elements: 0, bytes: 0, bitsPerWeight: 0,
                                                         readable: tensor.type.dtype != nil)
            entry.tensors += 1
            entry.elements += elements
            entry.bytes += tensor.byteCount
            counts[tensor.type] = entry
        }
        types = counts.values.map { entry in
            var e = entry
            e.bitsPerWeight = e.elements == 0 ? 0 : Double(e.bytes * 8) / Double(e.elements)
            return e
        }.sorted { ($0.bytes, $0.type) > ($1.bytes, $1.type) }
        elements = types.reduce(0) { $0 + $1.elements }
        bytes = types.reduce(0) { $0 + $1.bytes }
        bitsPerWeight = elements == 0 ? 0 : Double(bytes * 8) / Double(elements)
        architectureSupported = architecture.map { GGUFCheckpoint.supportedArchitectures.contains($0) } ?? false
        unreadableTensors = file.tensors.filter { $0.type.dtype == nil }.map(\.name)
    }

    /// llama.h `enum llama_ftype` (what `general.file_type` holds).
    static let fileTypeNames: [Int: String] = [
        0: "ALL_F32", 1: "MOSTLY_F16", 2: "MOSTLY_Q4_0", 3: "MOSTLY_Q4_1", 7: "MOSTLY_Q8_0", 8: "MOSTLY_Q5_0", 9: "MOSTLY_Q5_1",
        10: "MOSTLY_Q2_K", 11: "MOSTLY_Q3_K_S", 12: "MOSTLY_Q3_K_M", 13: "MOSTLY_Q3_K_L", 14: "MOSTLY_Q4_K_S", 15: "MOSTLY_Q4_K_M",
        16: "MOSTLY_Q5_K_S", 17: "MOSTLY_Q5_K_M", 18: "MOSTLY_Q6_K", 19: "MOSTLY_IQ2_XXS", 20: "MOSTLY_IQ2_XS", 21: "MOSTLY_Q2_K_S",
        22: "MOSTLY_IQ3_XS", 23: "MOSTLY_IQ3_XXS", 24: "MOSTLY_IQ1_S", 25: "MOSTLY_IQ4_NL", 26: "MOSTLY_IQ3_S", 27: "MOSTLY_IQ3_M",
        28: "MOSTLY_IQ2_S", 29: "MOSTLY_IQ2_M", 30: "MOSTLY_IQ4_XS", 31: "MOSTLY_IQ1_M", 32: "MOSTLY_BF16", 36: "MOSTLY_TQ1_0",
        37: "MOSTLY_TQ2_0", 38: "MOSTLY_MXFP4_MOE", 39: "MOSTLY_NVFP4", 40: "MOSTLY_Q1_0", 41: "MOSTLY_Q2_0", 1024: "GUESSED",
    ]
}
