/// The per-layer type lists of config.json (`layer_types`, `mlp_layer_types`), checked once
/// for every family that has them: one entry per layer, and only types Jindou computes.
enum LayerTypes {
    /// `layer_types` as sliding flags (true: `sliding_attention`).
    static func sliding(_ types: [String], layers: Int) throws -> [Bool] {
        try checked(types, field: "layer_types", layers: layers).map { type in
            switch type {
            case "full_attention": return false
            case "sliding_attention": return true
            default: throw ConfigurationError(field: "layer_types",
                                              reason: "'\(type)' is not a layer type Jindou computes (full_attention, sliding_attention)")
            }
        }
    }

    /// `layer_types` of the linear-attention hybrids as linear flags (true: `linear_attention`).
    static func linear(_ types: [String], layers: Int) throws -> [Bool] {
        try checked(types, field: "layer_types", layers: layers).map { type in
            switch type {
            case "linear_attention": return true
            case "full_attention": return false
            default: throw ConfigurationError(field: "layer_types",
                                              reason: "'\(type)' is not a layer type Jindou computes (linear_attention, full_attention)")
            }
        }
    }

    /// `mlp_layer_types` as feed-forward kinds (`dense` of `intermediateSize`, or `sparse`).
    static func feedForward(_ types: [String], layers: Int, intermediateSize: Int) throws -> [FeedForwardKind] {
        try checked(types, field: "mlp_layer_types", layers: layers).map { type in
            switch type {
            case "dense": return .dense(intermediateSize: intermediateSize)
            case "sparse": return .sparse
            default: throw ConfigurationError(field: "mlp_layer_types", reason: "'\(type)' is not dense or sparse")
            }
        }
    }

    private static func checked(_ types: [String], field: String, layers: Int) throws -> [String] {
        guard types.count == layers else { throw ConfigurationError(field: field, reason: "has \(types.count) entries for \(layers) layers") }
        return types
    }
}
