import Foundation
import JindouNumerics

/// Writes `.safetensors` files: the header (8-byte length + JSON padded with spaces to
/// an 8-byte boundary, as the reference writer does) then each tensor's bytes in order.
public struct SafetensorsWriter {
    public struct Tensor {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public let bytes: Data

        public init(name: String, dtype: DType, shape: [Int], bytes: Data) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        /// An F32 tensor from floats.
        public init(name: String, shape: [Int], floats: [Float]) {
            self.init(name: name, dtype: .float32, shape: shape, bytes: floats.withUnsafeBytes { Data($0) })
        }
    }

    /// A tensor's header entry (name, dtype, shape) without its bytes.
    public struct Entry: Sendable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }

        public init(name: String, dtype: DType, shape: [Int]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }
    }

    public var tensors: [Tensor] = []
    public var metadata: [String: String] = ["format": "pt"]

    public init() {}

    public mutating func append(_ tensor: Tensor) { tensors.append(tensor) }

    /// The 8-byte length and the JSON header for tensors laid out in order.
    static func header(for entries: [Entry], metadata: [String: String]) throws -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for e in entries {
            header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + e.byteCount]]
            offset += e.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var data = Data()
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
        data.append(json)
        return data
    }

    /// The complete file contents.
    public func encoded() throws -> Data {
        var data = try Self.header(for: tensors.map { Entry(name: $0.name, dtype: $0.dtype, shape: $0.shape) }, metadata: metadata)
        for t in tensors { data.append(t.bytes) }
        return data
    }

    public func write(to path: String) throws {
        try encoded().write(to: URL(fileURLWithPath: path))
    }
}

/// Writes a safetensors file tensor by tensor, for files too large to build in memory.
public final class SafetensorsStreamWriter {
    private let handle: FileHandle
    private let entries: [SafetensorsWriter.Entry]
    private var next = 0

    public init(path: String, entries: [SafetensorsWriter.Entry], metadata: [String: String] = ["format": "pt"]) throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw CheckpointError.unreadableFile(path: path, reason: "cannot create")
        }
        self.handle = handle
        self.entries = entries
        try handle.write(contentsOf: SafetensorsWriter.header(for: entries, metadata: metadata))
    }

    /// Writes the next tensor (entries are written in the order given to `init`);
    /// `fill` produces its bytes in chunks of whole elements.
    public func writeTensor(_ entry: SafetensorsWriter.Entry, fill: (UnsafeMutableRawBufferPointer) -> Void) throws {
        precondition(next < entries.count && entries[next].name == entry.name, "tensors must be written in header order")
        next += 1
        let chunk = 64 << 20
        var remaining = entry.byteCount
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(chunk, max(remaining, 1)), alignment: 64)
        defer { buffer.deallocate() }
        while remaining > 0 {
            let size = min(chunk - chunk % entry.dtype.byteSize, remaining)
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size])
            fill(part)
            try handle.write(contentsOf: Data(bytesNoCopy: part.baseAddress!, count: size, deallocator: .none))
            remaining -= size
        }
    }

    public func finish() throws {
        precondition(next == entries.count, "not every tensor was written")
        try handle.close()
    }
}
