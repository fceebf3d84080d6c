import Foundation
import JindouNumerics

/// A tensor to load, with the shape config.json implies (checked on load).
public struct TensorRequest: Sendable, Hashable {
    public let name: String
    public let shape: [Int]?
    /// Missing optional tensors are skipped instead of failing the load.
    public let optional: Bool
    /// Only these indices of the first dimension (one expert of a fused expert tensor);
    /// only their bytes are mapped. `shape` is the whole tensor's.
    public let rows: Range<Int>?

    public init(_ name: String, shape: [Int]?, optional: Bool = false, rows: Range<Int>? = nil) {
        self.name = name
        self.shape = shape
        self.optional = optional
        self.rows = rows
    }

    /// The name the loaded view is found under: the tensor name, or `name[lo..<hi]` for a slice.
    public var key: String { rows.map { "\(name)[\($0.lowerBound)..<\($0.upperBound)]" } ?? name }
}

/// A loaded tensor: a view into a mapping (or an owned copy when the file's alignment
/// does not allow zero-copy access).
///
/// `@unchecked Sendable`: read-only memory kept alive by `owner`.
public struct TensorView: @unchecked Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let pointer: UnsafeRawPointer
    public let owner: AnyObject
    public let path: String
    /// A GGUF block format (Q8_0, Q4_K): rows of whole blocks along the last dimension,
    /// `dtype` is `.uint8` (the raw bytes), as in `WeightMatrix`.
    public let blockFormat: BlockFormat?

    public init(name: String, dtype: DType, shape: [Int], pointer: UnsafeRawPointer, owner: AnyObject, path: String,
                blockFormat: BlockFormat? = nil) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.pointer = pointer
        self.owner = owner
        self.path = path
        self.blockFormat = blockFormat
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int {
        guard let blockFormat else { return elementCount * dtype.byteSize }
        return elementCount / blockFormat.blockSize * blockFormat.bytesPerBlock
    }

    /// The tensor as a 2-D kernel weight (F32/F16/BF16, or Q8_0/Q4_K blocks).
    public func matrix() throws -> WeightMatrix {
        guard shape.count == 2 else {
            throw CheckpointError.shapeMismatch(path: path, tensor: name, expected: [-1, -1], actual: shape)
        }
        if let blockFormat {
            return WeightMatrix(rows: shape[0], columns: shape[1], quantized: blockFormat, base: pointer, owner: owner)
        }
        guard dtype.isKernelWeightType else {
            throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: dtype.rawValue, supported: "F32, F16, BF16")
        }
        return WeightMatrix(rows: shape[0], columns: shape[1], dtype: dtype, base: pointer, owner: owner)
    }

    /// The tensor widened to `Float` (small tensors: norms, biases).
    public func floats() throws -> [Float] {
        guard blockFormat == nil, dtype.isKernelWeightType || dtype == .float64 else {
            throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: blockFormat.map { $0.rawValue.uppercased() } ?? dtype.rawValue,
                                                  supported: "F32, F16, BF16, F64")
        }
        return floatArray(pointer, dtype: dtype, count: elementCount)
    }

    /// Integer tensors (goldens store expert indices as I64).
    public func int64s() throws -> [Int64] {
        guard dtype == .int64 else {
            throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: dtype.rawValue, supported: "I64")
        }
        return (0..<elementCount).map { pointer.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self) }
    }
}

/// Tensors loaded from a checkpoint, with the mappings that hold them.
public struct TensorSet: Sendable {
    public let tensors: [String: TensorView]
    public let regions: [MappedRegion]
    /// Bytes mapped from checkpoint files (page-rounded).
    public var mappedBytes: Int { regions.reduce(0) { $0 + $1.length } }
    /// Bytes of the tensors themselves.
    public var tensorBytes: Int { tensors.values.reduce(0) { $0 + $1.byteCount } }

    public subscript(name: String) -> TensorView? { tensors[name] }

    /// The 2-D kernel weight `name`; an F8_E4M3 weight is paired with its `_scale_inv`
    /// block scales (`quantization` gives the block size; the scales' shape is checked).
    public func matrix(_ name: String, quantization: BlockQuantization?, as shape: [Int]? = nil) throws -> WeightMatrix {
        guard var tensor = tensors[name] else { throw CheckpointError.missingTensor(tensor: name, searched: []) }
        if let shape {
            // A slice [1, rows, columns] of a stacked tensor, viewed as its 2-D matrix.
            guard shape.reduce(1, *) == tensor.elementCount else {
                throw CheckpointError.shapeMismatch(path: tensor.path, tensor: name, expected: shape, actual: tensor.shape)
            }
            tensor = TensorView(name: tensor.name, dtype: tensor.dtype, shape: shape, pointer: tensor.pointer, owner: tensor.owner,
                                path: tensor.path, blockFormat: tensor.blockFormat)
        }
        guard tensor.dtype == .float8E4M3 else { return try tensor.matrix() }
        guard tensor.shape.count == 2 else {
            throw CheckpointError.shapeMismatch(path: tensor.path, tensor: name, expected: [-1, -1], actual: tensor.shape)
        }
        guard let quantization else {
            throw CheckpointError.badQuantization(
                path: tensor.path, tensor: name,
                reason: "is F8_E4M3 but config.json has no quantization_config with weight_block_size")
        }
        guard let scales = tensors[name + WeightNames.scaleSuffix] else {
            throw CheckpointError.badQuantization(
                path: tensor.path, tensor: name, reason: "is F8_E4M3 but its block scales '\(name)\(WeightNames.scaleSuffix)' are missing")
        }
        let expected = quantization.scaleShape(rows: tensor.shape[0], columns: tensor.shape[1])
        guard scales.shape == expected else {
            throw CheckpointError.shapeMismatch(path: scales.path, tensor: scales.name, expected: expected, actual: scales.shape)
        }
        let values: UnsafePointer<Float>, owner: AnyObject
        if scales.dtype == .float32 {
            values = scales.pointer.assumingMemoryBound(to: Float.self)
            owner = scales.owner
        } else {
            let widened = try scales.floats()
            let storage = OwnedBytes(byteCount: widened.count * MemoryLayout<Float>.size)
            let typed = storage.pointer.bindMemory(to: Float.self, capacity: widened.count)
            typed.update(from: widened, count: widened.count)
            values = UnsafePointer(typed)
            owner = storage
        }
        for i in 0..<scales.elementCount where !(values[i].isFinite && values[i] > 0) {
            throw CheckpointError.badQuantization(path: scales.path, tensor: scales.name,
                                                  reason: "block scale \(i) is \(values[i]); scales must be finite and positive")
        }
        let blockScales = BlockScales(values: values, blockRows: quantization.blockRows, blockColumns: quantization.blockColumns,
                                      blockColumnCount: expected[1], owner: owner)
        return WeightMatrix(rows: tensor.shape[0], columns: tensor.shape[1], dtype: .float8E4M3, base: tensor.pointer,
                            owner: tensor.owner, blockScales: blockScales)
    }

    /// Reads every mapped page once (with a progress bar on a terminal) so the first
    /// forward pass does not stall on page faults.
    public func prefault(label: String = "loading weights") {
        let progress = ProgressBar(label: label, total: mappedBytes)
        for region in regions { region.prefault { progress.advance(by: $0) } }
        progress.finish()
    }
}

/// A Hugging Face checkpoint directory: `config.json` plus `model.safetensors` or a
/// sharded `model.safetensors.index.json`.
///
/// Opening reads only `config.json` and the index; file headers are read when tensors
/// are loaded, and only the pages holding requested tensors are mapped, so a worker
/// that loads its experts maps just those bytes.
public struct Checkpoint: Sendable {
    public let directory: String
    public let configData: Data
    /// Tensor name → file name inside `directory`.
    public let weightMap: [String: String]

    public init(directory: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CheckpointError.missingFile(path: directory)
        }
        self.directory = directory
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        guard let config = FileManager.default.contents(atPath: configPath) else {
            throw CheckpointError.missingFile(path: configPath)
        }
        self.configData = config

        let single = (directory as NSString).appendingPathComponent("model.safetensors")
        let index = (directory as NSString).appendingPathComponent("model.safetensors.index.json")
        if FileManager.default.fileExists(atPath: single) {
            let header = try SafetensorsHeader(contentsOf: single)
            weightMap = header.entries.keys.reduce(into: [:]) { $0[$1] = "model.safetensors" }
        } else if FileManager.default.fileExists(atPath: index) {
            weightMap = try Self.readIndex(index)
        } else {
            throw CheckpointError.missingFile(path: "\(single) (or \(index))")
        }
    }

    private static func readIndex(_ path: String) throws -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError.unreadableFile(path: path, reason: "cannot read")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError.badIndex(path: path, reason: "not a JSON object")
        }
        guard let map = object["weight_map"] as? [String: Any] else {
            throw CheckpointError.badIndex(path: path, reason: "no 'weight_map' object")
        }
        var result: [String: String] = [:]
        for (name, file) in map {
            guard let file = file as? String, !file.contains("/"), !file.isEmpty else {
                throw CheckpointError.badIndex(path: path, reason: "weight_map entry '\(name)' is not a file name in the directory")
            }
            result[name] = file
        }
        return result
    }

    /// Names of every tensor the checkpoint declares.
    public var tensorNames: [String] { weightMap.keys.sorted() }

    /// Full path of a file in the checkpoint.
    public func path(of file: String) -> String {
        (directory as NSString).appendingPathComponent(file)
    }

    /// Headers of the files holding `names` (each file parsed once).
    public func headers(for names: some Sequence<String>) throws -> [String: SafetensorsHeader] {
        var headers: [String: SafetensorsHeader] = [:]
        for name in names {
            guard let file = weightMap[name], headers[file] == nil else { continue }
            headers[file] = try SafetensorsHeader(contentsOf: path(of: file))
        }
        return headers
    }

    /// Maps exactly the requested tensors, validating dtype and shape.
    public func load(_ requests: [TensorRequest]) throws -> TensorSet {
        let headers = try headers(for: requests.map(\.name))
        var byFile: [String: [(TensorRequest, SafetensorsEntry)]] = [:]
        for request in requests {
            guard let file = weightMap[request.name] else {
                if request.optional { continue }
                throw CheckpointError.missingTensor(tensor: request.name, searched: searchedFiles)
            }
            let header = headers[file]!
            guard let entry = header.entries[request.name] else {
                if request.optional { continue }
                throw CheckpointError.missingTensor(tensor: request.name, searched: [header.path])
            }
            if let expected = request.shape, expected != entry.shape {
                throw CheckpointError.shapeMismatch(path: header.path, tensor: request.name, expected: expected, actual: entry.shape)
            }
            var selected = entry
            if let rows = request.rows {
                guard let first = entry.shape.first, rows.lowerBound >= 0, rows.upperBound <= first, !rows.isEmpty else {
                    throw CheckpointError.shapeMismatch(path: header.path, tensor: request.name,
                                                        expected: [rows.upperBound] + entry.shape.dropFirst(), actual: entry.shape)
                }
                let rowBytes = entry.dataRange.count / first
                let begin = entry.dataRange.lowerBound + rows.lowerBound * rowBytes
                selected = SafetensorsEntry(name: request.key, dtype: entry.dtype, shape: [rows.count] + entry.shape.dropFirst(),
                                            dataRange: begin..<(begin + rows.count * rowBytes))
            }
            byFile[file, default: []].append((request, selected))
        }

        var tensors: [String: TensorView] = [:]
        var regions: [MappedRegion] = []
        for (file, items) in byFile.sorted(by: { $0.key < $1.key }) {
            let header = headers[file]!
            let ranges = items.map { (header.dataOffset + $0.1.dataRange.lowerBound)..<(header.dataOffset + $0.1.dataRange.upperBound) }
            let mapped = try MappedRegion.mapCoalesced(path: header.path, ranges: ranges)
            regions += mapped.regions
            for ((request, entry), (range, region)) in zip(items, zip(ranges, mapped.regionOfRange)) {
                tensors[request.key] = Self.view(entry, at: region.pointer(atFileOffset: range.lowerBound), region: region, path: header.path)
            }
        }
        return TensorSet(tensors: tensors, regions: regions)
    }

    /// Zero-copy when the element is naturally aligned in the file; otherwise a copy.
    private static func view(_ entry: SafetensorsEntry, at pointer: UnsafeRawPointer, region: MappedRegion, path: String) -> TensorView {
        if Int(bitPattern: pointer) % entry.dtype.byteSize == 0 {
            return TensorView(name: entry.name, dtype: entry.dtype, shape: entry.shape, pointer: pointer, owner: region, path: path)
        }
        let count = entry.dataRange.count
        let copy = OwnedBytes(byteCount: count, alignment: 64)
        copy.pointer.copyMemory(from: pointer, byteCount: count)
        return TensorView(name: entry.name, dtype: entry.dtype, shape: entry.shape, pointer: UnsafeRawPointer(copy.pointer), owner: copy, path: path)
    }

    private var searchedFiles: [String] {
        Array(Set(weightMap.values)).sorted().map { path(of: $0) }
    }
}
