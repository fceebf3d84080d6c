import Foundation
import JindouModel
import JindouRouting

/// Checkpoints and goldens written by `tools/make_fixtures.py` (transformers), committed
/// under Tests/Fixtures.
public enum Fixtures {
    public static let root: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures").path

    /// The repository root (for scripts under cluster/).
    public static let repositoryRoot: String = URL(fileURLWithPath: root).deletingLastPathComponent().deletingLastPathComponent().path

    public static func path(_ name: String) -> String { (root as NSString).appendingPathComponent(name) }

    /// Every fixture directory that carries goldens.
    public static let withGoldens: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: path($0) + "/golden.json") }.sorted()
    }()

    /// Golden sets: (fixture, golden file stem) — bf16 fixtures have a second,
    /// f32-upcast reference.
    public static let goldenSets: [GoldenSet] = withGoldens.flatMap { name in
        ["golden", "golden-f32ref"].compactMap { stem in
            FileManager.default.fileExists(atPath: path(name) + "/\(stem).json") ? GoldenSet(fixture: name, stem: stem) : nil
        }
    }
}

public struct GoldenSet: CustomStringConvertible, Sendable {
    public let fixture: String
    public let stem: String

    public init(fixture: String, stem: String) {
        self.fixture = fixture
        self.stem = stem
    }

    public var description: String { "\(fixture)/\(stem)" }

    /// The dtype transformers ran the golden in ("float32" or "bfloat16").
    public var dtype: String {
        let url = URL(fileURLWithPath: Fixtures.path(fixture) + "/\(stem).json")
        return (try? JSONDecoder().decode(Golden.self, from: Data(contentsOf: url)))?.dtype ?? "unknown"
    }

    public func load() throws -> (Golden, SafetensorsFile) {
        let directory = Fixtures.path(fixture)
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/\(stem).json"))
        return (try JSONDecoder().decode(Golden.self, from: data), try SafetensorsFile(path: directory + "/\(stem).safetensors"))
    }
}

/// `golden.json` as the fixture generator writes it.
public struct Golden: Decodable, Sendable {
    public let checkpoint: String
    public let dtype: String
    public let cases: [Case]
    public let router: [RouterCase]
    public let maxAbsLogitDiffVsF32ref: Double?

    enum CodingKeys: String, CodingKey {
        case checkpoint, dtype, cases, router
        case maxAbsLogitDiffVsF32ref = "max_abs_logit_diff_vs_f32ref"
    }

    public struct Case: Decodable, Sendable {
        public let index: Int
        public let name: String
        public let promptIDs: [Int]
        public let expertsPerToken: GoldenExperts
        public let autoThreshold: Double?
        public let maxNewTokens: Int
        public let greedyNewTokens: [Int]
        public let minTopGap: Double?
        public let minRoutingMargin: Double?
        /// Image files in the prompt (vision-language fixtures), relative to the fixture.
        public let images: [String]?
        public let imageGridTHW: [[Int]]?
        public let ropeDelta: Int?

        enum CodingKeys: String, CodingKey {
            case index, name
            case promptIDs = "prompt_ids"
            case expertsPerToken = "experts_per_token"
            case autoThreshold = "auto_threshold"
            case maxNewTokens = "max_new_tokens"
            case greedyNewTokens = "greedy_new_tokens"
            case minTopGap = "min_top_gap"
            case minRoutingMargin = "min_routing_margin"
            case images
            case imageGridTHW = "image_grid_thw"
            case ropeDelta = "rope_delta"
        }

        public var hasImages: Bool { !(images ?? []).isEmpty }

        public var experts: ExpertsPerToken { expertsPerToken.resolved(threshold: autoThreshold) }
    }

    public struct RouterCase: Decodable, Sendable {
        public let index: Int
        public let layer: Int
        public let expertsPerToken: GoldenExperts
        public let autoThreshold: Double?
        public let tokens: Int

        enum CodingKeys: String, CodingKey {
            case index, layer, tokens
            case expertsPerToken = "experts_per_token"
            case autoThreshold = "auto_threshold"
        }

        public var experts: ExpertsPerToken { expertsPerToken.resolved(threshold: autoThreshold) }
    }
}

extension Golden.Case {
    /// The processor's pixel values of an image case, split per image by its grid.
    public func pixelPatches(_ tensors: SafetensorsFile) throws -> [PixelPatches] {
        guard hasImages, let grids = imageGridTHW else { return [] }
        let values = try tensors.tensor("case\(index).pixel_values").floats()
        let width = values.count / grids.reduce(0) { $0 + $1.reduce(1, *) }
        var start = 0
        return grids.map { g in
            let count = g.reduce(1, *) * width
            defer { start += count }
            return PixelPatches(values: Array(values[start..<(start + count)]), grid: ImageGrid(t: g[0], h: g[1], w: g[2]))
        }
    }

    /// The case's images run through `engine`'s vision tower, or nil for text-only cases.
    public func multimodal(_ tensors: SafetensorsFile, engine: InferenceEngine) throws -> MultimodalPrompt? {
        let images = try pixelPatches(tensors)
        return images.isEmpty ? nil : try engine.multimodal(tokens: promptIDs, images: images)
    }
}

/// `experts_per_token` in a golden: an integer, "auto", or null (the configured K).
public enum GoldenExperts: Decodable, Sendable {
    case configured
    case fixed(Int)
    case auto

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .configured }
        else if let k = try? c.decode(Int.self) { self = .fixed(k) }
        else if try c.decode(String.self) == "auto" { self = .auto }
        else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "bad experts_per_token") }
    }

    public func resolved(threshold: Double?) -> ExpertsPerToken {
        switch self {
        case .configured: .configured
        case .fixed(let k): .fixed(k)
        case .auto: .auto(threshold: threshold ?? ExpertsPerToken.defaultAutoThreshold)
        }
    }
}

/// Largest absolute difference between two equally long arrays.
public func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    var worst: Float = 0
    for i in a.indices { worst = max(worst, abs(a[i] - b[i])) }
    return worst
}

/// Rows of a 2-D golden tensor.
public func rows(_ view: TensorView) throws -> [[Float]] {
    let values = try view.floats()
    let width = view.shape[1]
    return (0..<view.shape[0]).map { Array(values[($0 * width)..<(($0 + 1) * width)]) }
}

/// Engines are loaded once per fixture per test process.
public actor EngineCache {
    public static let shared = EngineCache()
    private var engines: [String: InferenceEngine] = [:]

    public func engine(_ fixture: String) throws -> InferenceEngine {
        if let engine = engines[fixture] { return engine }
        let engine = try InferenceEngine.load(directory: Fixtures.path(fixture))
        engines[fixture] = engine
        return engine
    }
}

/// What `ModelDescription` makes of fixture `fixture`'s config.json after `edit`: "accepted", or
/// the error's text (config-refusal tests check it names the field).
public func configVerdict(fixture: String, _ edit: (inout [String: Any]) -> Void) throws -> String {
    let path = Fixtures.path(fixture) + "/config.json"
    var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    edit(&config)
    do {
        _ = try ModelDescription(configJSON: try JSONSerialization.data(withJSONObject: config), path: path)
        return "accepted"
    } catch { return "\(error)" }
}
