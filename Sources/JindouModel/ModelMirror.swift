import Crypto
import Foundation

/// What a node needs to rebuild a model's files without their weights: each file's name
/// and size and how many of its leading bytes (the header, or all of a small file) to copy.
/// A worker without a local checkpoint (`jindoud worker --cache-dir`) recreates the files
/// as sparse files of the same size, copies those prefixes, then fills in only its
/// experts' byte ranges (`WeightSource.fileRanges(of:)`); opened as usual, the mirror is the
/// same model with the same fingerprint, and reads nothing it did not fetch.
public struct ModelMirrorManifest: Codable, Sendable, Equatable {
    public struct File: Codable, Sendable, Equatable {
        /// A file name in the model's directory (no `/`).
        public var name: String
        public var size: Int
        /// Leading bytes always copied: the header, or the whole file for JSON files.
        public var prefix: Int
        public init(name: String, size: Int, prefix: Int) {
            self.name = name
            self.size = size
            self.prefix = prefix
        }
    }
    public var fingerprint: String
    /// What to open inside the mirror directory: "." (a checkpoint directory) or a GGUF file name.
    public var entry: String
    public var files: [File]

    public init(fingerprint: String, entry: String, files: [File]) {
        self.fingerprint = fingerprint
        self.entry = entry
        self.files = files
    }

    /// Checks names and sizes (a manifest comes over the network).
    public func validate() throws {
        guard !files.isEmpty else { throw CheckpointError.badIndex(path: "manifest", reason: "no files") }
        var seen = Set<String>()
        for file in files {
            guard !file.name.isEmpty, !file.name.contains("/"), file.name != ".", file.name != "..", seen.insert(file.name).inserted else {
                throw CheckpointError.badIndex(path: "manifest", reason: "bad or repeated file name '\(file.name)'")
            }
            guard file.size >= 0, file.prefix >= 0, file.prefix <= file.size else {
                throw CheckpointError.badIndex(path: "manifest", reason: "file '\(file.name)': prefix \(file.prefix) and size \(file.size) do not fit")
            }
        }
        guard entry == "." || seen.contains(entry) else {
            throw CheckpointError.badIndex(path: "manifest", reason: "opens '\(entry)', which it does not list")
        }
    }
}

/// A byte range of one file of a model (by file name inside its directory).
public struct ModelFileRange: Sendable, Hashable, Codable {
    public var file: String
    public var offset: Int
    public var length: Int
    public init(file: String, offset: Int, length: Int) {
        self.file = file
        self.offset = offset
        self.length = length
    }
    public var end: Int { offset + length }
}

/// Sources whose files can be mirrored: the manifest and the byte ranges of tensors.
public protocol MirrorableWeightSource: WeightSource {
    /// The directory holding the model's files (a checkpoint directory, or a GGUF file's directory).
    var fileDirectory: String { get }
    func mirrorManifest() throws -> ModelMirrorManifest
    /// The byte ranges the requested tensors occupy (missing optional tensors are skipped).
    func fileRanges(of requests: [TensorRequest]) throws -> [ModelFileRange]
}

extension Checkpoint: MirrorableWeightSource {
    public var fileDirectory: String { directory }

    public func mirrorManifest() throws -> ModelMirrorManifest {
        var files: [ModelMirrorManifest.File] = []
        for name in ["config.json", "model.safetensors.index.json"] {
            let path = path(of: name)
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                  let size = (attributes[.size] as? NSNumber)?.intValue else { continue }
            files.append(.init(name: name, size: size, prefix: size))
        }
        let headers = try headers(for: tensorNames)
        for (file, header) in headers.sorted(by: { $0.key < $1.key }) {
            files.append(.init(name: file, size: header.fileSize, prefix: header.dataOffset))
        }
        return ModelMirrorManifest(fingerprint: try fingerprint(), entry: ".", files: files)
    }

    public func fileRanges(of requests: [TensorRequest]) throws -> [ModelFileRange] {
        let headers = try headers(for: requests.map(\.name))
        var ranges: [ModelFileRange] = []
        for request in requests {
            guard let file = weightMap[request.name], let header = headers[file], let entry = header.entries[request.name] else {
                if request.optional { continue }
                throw CheckpointError.missingTensor(tensor: request.name, searched: [directory])
            }
            var range = entry.dataRange
            if let rows = request.rows, let first = entry.shape.first, first > 0 {
                let rowBytes = entry.dataRange.count / first
                range = (range.lowerBound + rows.lowerBound * rowBytes)..<(range.lowerBound + rows.upperBound * rowBytes)
            }
            ranges.append(ModelFileRange(file: file, offset: header.dataOffset + range.lowerBound, length: range.count))
        }
        return ranges
    }
}

extension GGUFCheckpoint: MirrorableWeightSource {
    public var fileDirectory: String { (file.path as NSString).deletingLastPathComponent }

    public func mirrorManifest() throws -> ModelMirrorManifest {
        let files = file.parts.map {
            ModelMirrorManifest.File(name: ($0.path as NSString).lastPathComponent, size: $0.byteCount, prefix: $0.dataOffset)
        }
        return ModelMirrorManifest(fingerprint: try fingerprint(), entry: (file.path as NSString).lastPathComponent, files: files)
    }

    public func fileRanges(of requests: [TensorRequest]) throws -> [ModelFileRange] {
        try requests.compactMap { request in
            guard let (info, _, range) = try locate(request) else { return nil }
            return ModelFileRange(file: (file.parts[info.part].path as NSString).lastPathComponent,
                                  offset: range.lowerBound, length: range.count)
        }
    }
}

extension ModelMirrorManifest {
    /// Ranges larger than this are refused (a worker asks in pieces).
    public static let maximumRangeLength = 64 << 20

    /// Lowercase hex SHA-256 of `data`.
    public static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// Reads `range` of one of the manifest's files from `directory`, checking the range
    /// against the manifest first (a request comes over the network).
    public func read(_ range: ModelFileRange, from directory: String) throws -> Data {
        guard let file = files.first(where: { $0.name == range.file }) else {
            throw ModelMirrorError.unknownFile(range.file)
        }
        guard range.offset >= 0, range.length > 0, range.length <= Self.maximumRangeLength, range.end <= file.size else {
            throw ModelMirrorError.badRange("\(range.file) bytes \(range.offset)..<\(range.end) (file size \(file.size), at most \(Self.maximumRangeLength) bytes per request)")
        }
        let path = (directory as NSString).appendingPathComponent(file.name)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CheckpointError.unreadableFile(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var data = Data(count: range.length)
        var done = 0
        try data.withUnsafeMutableBytes { buffer in
            while done < range.length {
                let n = pread(fd, buffer.baseAddress! + done, range.length - done, off_t(range.offset + done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    throw CheckpointError.truncatedFile(path: path, expectedBytes: range.end, actualBytes: range.offset + done)
                }
                done += n
            }
        }
        return data
    }
}

public enum ModelMirrorError: Error, CustomStringConvertible, Equatable {
    case unknownFile(String)
    case badRange(String)
    case notMirrorable(String)
    case fingerprintMismatch(expected: String, actual: String)
    case missingRanges(tensor: String, bytes: Int)

    public var description: String {
        switch self {
        case .unknownFile(let name): "the model has no file '\(name)'"
        case .badRange(let what): "bad range: \(what)"
        case .notMirrorable(let path): "\(path) cannot be served to workers without a local copy"
        case .fingerprintMismatch(let expected, let actual):
            "the mirrored model's fingerprint is \(actual), the coordinator's manifest says \(expected)"
        case .missingRanges(let tensor, let bytes): "tensor '\(tensor)' has \(bytes) bytes not fetched yet"
        }
    }
}
