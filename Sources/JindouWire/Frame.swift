import CJindouSupport
import NIOCore
import SwiftProtobuf

/// Constants of the wire protocol (docs/wire.md).
public enum WireProtocol {
    /// Bumped on any incompatible change to frames or messages.
    public static let version: UInt32 = 1
    /// Headers are small (routing of a batch is the largest part); anything bigger is garbage.
    public static let maximumHeaderLength = 16 << 20
    /// Default cap on one payload (a prefill batch of hidden states); configurable per side.
    public static let defaultMaximumPayloadLength = 1 << 30
}

public typealias FrameHeader = Jindou_V1_FrameHeader
public typealias MessageKind = Jindou_V1_MessageKind
public typealias TensorDType = Jindou_V1_TensorDType
public typealias ErrorCode = Jindou_V1_ErrorCode

/// One frame: a protobuf header and a raw little-endian payload.
public struct Frame: Sendable {
    public var header: FrameHeader
    public var payload: ByteBuffer

    public init(header: FrameHeader, payload: ByteBuffer = ByteBuffer()) {
        self.header = header
        self.payload = payload
    }

    public var kind: MessageKind { header.kind }
    public var requestID: UInt64 { header.requestID }
}

/// CRC-32C of a buffer's readable bytes.
public func crc32c(_ buffer: ByteBuffer) -> UInt32 {
    buffer.withUnsafeReadableBytes { jindou_crc32c(0, $0.baseAddress, $0.count) }
}

/// CRC-32C of raw bytes.
public func crc32c(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    jindou_crc32c(0, bytes.baseAddress, bytes.count)
}

/// Writes frames: fills in the protocol version, payload length and checksum.
public enum FrameEncoder {
    public static func encode(_ frame: Frame, into buffer: inout ByteBuffer) throws {
        let bytes = try headerBytes(frame)
        buffer.reserveCapacity(minimumWritableBytes: 4 + bytes.count + frame.payload.readableBytes)
        buffer.writeInteger(UInt32(bytes.count), endianness: .little)
        buffer.writeBytes(bytes)
        var payload = frame.payload
        buffer.writeBuffer(&payload)
    }

    /// The frame's length prefix and header, for transports that write the payload
    /// separately (straight from the frame's buffer, as the shared-memory rings do).
    public static func encodePrefix(_ frame: Frame) throws -> ByteBuffer {
        let bytes = try headerBytes(frame)
        var buffer = ByteBuffer()
        buffer.reserveCapacity(4 + bytes.count)
        buffer.writeInteger(UInt32(bytes.count), endianness: .little)
        buffer.writeBytes(bytes)
        return buffer
    }

    private static func headerBytes(_ frame: Frame) throws -> [UInt8] {
        var header = frame.header
        header.protocolVersion = WireProtocol.version
        header.payloadLength = UInt64(frame.payload.readableBytes)
        header.payloadCrc32C = crc32c(frame.payload)
        return try header.serializedBytes()
    }

    public static func encode(_ frame: Frame) throws -> ByteBuffer {
        var buffer = ByteBuffer()
        try encode(frame, into: &buffer)
        return buffer
    }
}

/// What went wrong with bytes from a peer. Each says what was expected.
public enum WireError: Error, Equatable, CustomStringConvertible {
    case headerTooLarge(length: Int, limit: Int)
    case malformedHeader(reason: String)
    case payloadTooLarge(length: UInt64, limit: Int)
    case checksumMismatch(requestID: UInt64, declared: UInt32, actual: UInt32)
    case protocolVersionMismatch(ours: UInt32, theirs: UInt32)
    case unexpectedMessage(kind: String, state: String)
    case badMessage(kind: String, reason: String)
    case modelFingerprintMismatch(ours: String, theirs: String)
    case remote(code: String, message: String)

    public var description: String {
        switch self {
        case .headerTooLarge(let length, let limit):
            "frame header length \(length) exceeds the limit \(limit)"
        case .malformedHeader(let reason):
            "malformed frame header: \(reason)"
        case .payloadTooLarge(let length, let limit):
            "frame payload of \(length) bytes exceeds the limit \(limit)"
        case .checksumMismatch(let id, let declared, let actual):
            "payload checksum mismatch in request \(id): header says \(hex(declared)), payload hashes to \(hex(actual))"
        case .protocolVersionMismatch(let ours, let theirs):
            "protocol version mismatch: we speak \(ours), peer speaks \(theirs)"
        case .unexpectedMessage(let kind, let state):
            "unexpected \(kind) frame \(state)"
        case .badMessage(let kind, let reason):
            "bad \(kind) frame: \(reason)"
        case .modelFingerprintMismatch(let ours, let theirs):
            "model fingerprint mismatch: ours \(ours), peer's \(theirs)"
        case .remote(let code, let message):
            "peer reported \(code): \(message)"
        }
    }

    /// The protocol's error code for this error, for an ERROR reply.
    public var code: ErrorCode {
        switch self {
        case .headerTooLarge, .malformedHeader, .unexpectedMessage, .badMessage: .malformedFrame
        case .payloadTooLarge: .payloadTooLarge
        case .checksumMismatch: .checksumMismatch
        case .protocolVersionMismatch: .protocolVersionMismatch
        case .modelFingerprintMismatch: .modelFingerprintMismatch
        case .remote: .internal
        }
    }
}

private func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }

/// Incremental frame decoding as a pure state machine: bytes in, frames or errors out.
/// NIO handlers around it stay thin; tests drive it without sockets.
///
/// Errors split in two: *fatal* ones (bad header length, unparseable header, payload
/// over the limit) lose the frame boundary, so the connection must close; *recoverable*
/// ones (checksum, protocol version) consume the whole frame, so the peer can be told and
/// the stream continues.
public struct FrameDecoder: Sendable {
    public struct DecodingError: Error, Equatable, Sendable {
        public let error: WireError
        /// The request the bad frame belonged to, when its header could be read.
        public let requestID: UInt64?
        public let recoverable: Bool
    }

    public let maximumPayloadLength: Int
    private var pending: (header: FrameHeader, headerBytes: Int)?

    public init(maximumPayloadLength: Int = WireProtocol.defaultMaximumPayloadLength) {
        self.maximumPayloadLength = maximumPayloadLength
    }

    /// The next complete frame in `buffer` (consuming it), or nil when more bytes are needed.
    public mutating func decode(_ buffer: inout ByteBuffer) throws(DecodingError) -> Frame? {
        if pending == nil {
            guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self) else {
                return nil
            }
            let headerLength = Int(length)
            guard headerLength <= WireProtocol.maximumHeaderLength else {
                throw DecodingError(error: .headerTooLarge(length: headerLength, limit: WireProtocol.maximumHeaderLength),
                                    requestID: nil, recoverable: false)
            }
            guard buffer.readableBytes >= 4 + headerLength else { return nil }
            let bytes = buffer.getBytes(at: buffer.readerIndex + 4, length: headerLength)!
            let header: FrameHeader
            do {
                header = try FrameHeader(serializedBytes: bytes)
            } catch {
                throw DecodingError(error: .malformedHeader(reason: "not a FrameHeader protobuf (\(headerLength) bytes)"),
                                    requestID: nil, recoverable: false)
            }
            guard header.payloadLength <= UInt64(maximumPayloadLength) else {
                throw DecodingError(error: .payloadTooLarge(length: header.payloadLength, limit: maximumPayloadLength),
                                    requestID: header.requestID, recoverable: false)
            }
            pending = (header, headerLength)
        }
        let (header, headerLength) = pending!
        let payloadLength = Int(header.payloadLength)
        guard buffer.readableBytes >= 4 + headerLength + payloadLength else { return nil }
        buffer.moveReaderIndex(forwardBy: 4 + headerLength)
        let payload = buffer.readSlice(length: payloadLength)!
        pending = nil
        if header.protocolVersion != WireProtocol.version {
            throw DecodingError(error: .protocolVersionMismatch(ours: WireProtocol.version, theirs: header.protocolVersion),
                                requestID: header.requestID, recoverable: true)
        }
        let actual = crc32c(payload)
        if actual != header.payloadCrc32C {
            throw DecodingError(error: .checksumMismatch(requestID: header.requestID, declared: header.payloadCrc32C, actual: actual),
                                requestID: header.requestID, recoverable: true)
        }
        return Frame(header: header, payload: payload)
    }
}
