import Foundation
import HTTPTypes
import Hummingbird
import JindouModel
import NIOCore

/// The model's files for workers without a local copy (`jindoud worker --cache-dir`):
/// `GET /v1/node/manifest` lists them (`ModelMirrorManifest`), and
/// `GET /v1/node/files/{name}?offset=O&length=L` returns a byte range with its SHA-256 in
/// `x-jindou-sha256`, computed from the bytes read here so the worker can check what arrived.
/// Behind the cluster secret (and mutual TLS) like the admin API.
public struct ModelFileServer: Sendable {
    public let manifest: ModelMirrorManifest
    public let directory: String

    public init(source: any WeightSource) throws {
        guard let source = source as? any MirrorableWeightSource else { throw ModelMirrorError.notMirrorable(source.path) }
        manifest = try source.mirrorManifest()
        directory = source.fileDirectory
    }

    func register(on router: Router<APIRequestContext>) {
        router.get("v1/node/manifest") { _, context -> Response in
            await CoordinatorAPI.respond(context) { manifest }
        }
        router.get("v1/node/files/:name") { request, context -> Response in
            let query = request.uri.queryParameters
            guard let name = context.parameters.get("name"),
                  let offset = query.get("offset").flatMap({ Int($0) }), let length = query.get("length").flatMap({ Int($0) }) else {
                return CoordinatorAPI.errorResponse(.badRequest, type: "invalid_request_error",
                                                    message: "give a file name and integer offset and length query parameters")
            }
            let range = ModelFileRange(file: name, offset: offset, length: length)
            let data: Data
            do {
                data = try manifest.read(range, from: directory)
            } catch let error as ModelMirrorError {
                if case .unknownFile = error { return CoordinatorAPI.errorResponse(.notFound, type: "invalid_request_error", message: error.description) }
                return CoordinatorAPI.errorResponse(.rangeNotSatisfiable, type: "invalid_request_error", message: error.description)
            } catch {
                return CoordinatorAPI.errorResponse(.internalServerError, type: "server_error", message: "\(error)")
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/octet-stream"
            headers[HTTPField.Name("x-jindou-sha256")!] = ModelMirrorManifest.sha256(data)
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(data: data)))
        }
    }
}
