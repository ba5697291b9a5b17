#!/usr/bin/python3
"""Checks hvz's API server against its OpenAPI description (api/openapi.yaml).

Usage: openapi_test.py HVZ_BINARY OPENAPI_YAML

Runs `hvz --api-sock SOCK` before boot (no VM is built except by a failing
InstanceStart, so no KVM is needed) in a scratch directory, and checks:
  1. the description itself: every $ref resolves, every operation
     documents a 400 with the Error schema, every schema is a valid JSON
     Schema (2020-12, as OpenAPI 3.1 says);
  2. every operation's examples (request-body `examples`, `x-hvz-examples`)
     match the request schema; sent to hvz, the status is documented (and
     `x-hvz-status` when given) and the body matches the documented
     response schema (and contains `x-hvz-fault` when given);
  3. the negative examples (`x-hvz-invalid`: the schema must reject them;
     `x-hvz-rejected`: the schema accepts them) get a 400 with an Error
     body, and so do malformed JSON, a missing body, a GET with a body and
     a body over 51200 bytes;
  4. route coverage: the documented paths and a list of Firecracker's and
     hvz's paths are probed with GET, PUT, PATCH, POST and DELETE: whatever
     is not answered "Invalid request method and/or path" must be
     documented (or fall under `x-hvz-not-supported`), and every documented
     operation must be served;
  5. GET /vm/config (and GET /machine-config) after the PUTs, against the
     schema and against what was sent;
  6. PUT /snapshot/load on a fresh hvz (after PUT /logger): a snapshot
     that does not exist is a 400 "Load snapshot error: ..." that leaves
     the process as it was (not started, still configurable), and after a
     PUT /boot-source a load is refused.
PUT /network-interfaces opens the TAP device, as Firecracker does: without
CAP_NET_ADMIN (no TAP can be created) the examples marked `x-hvz-needs-tap`
are expected to fail with Firecracker's "Could not create the network
device" instead.
The actions (InstanceStart with a kernel file that was removed) run on a
second hvz, started without --id, with nothing but a boot source; the
snapshot load on a third.
Prints "openapi: N checks passed" and exits 1 on any failure.
"""

import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import jsonschema
import yaml

METHODS = ['GET', 'PUT', 'PATCH', 'POST', 'DELETE']
INVALID_ROUTE = 'Invalid request method and/or path'
MAX_BODY = 51200
# Firecracker's routes, hvz's, and near misses, probed besides the
# documented paths: any the server serves must be documented (so an
# operation dropped from the description is noticed too).
CANDIDATE_PATHS = [
    '/', '/version', '/actions', '/boot-source', '/machine-config', '/drives/rootfs',
    '/network-interfaces/eth0', '/vm', '/vm/config', '/logger', '/metrics', '/serial',
    '/entropy', '/vsock',
    '/balloon', '/balloon/statistics', '/balloon/hinting/start', '/balloon/hinting/status',
    '/balloon/hinting/stop', '/mmds', '/mmds/config', '/snapshot/create', '/snapshot/load',
    '/snapshot', '/snapshot/x', '/snapshot/load/x',
    '/cpu-config', '/hotplug/memory', '/pmem/pmem0', '/memory-hotplug', '/vm/config/x', '/vm/x',
    '/drives', '/drives/', '/drives/rootfs/', '/drives/rootfs/x', '/network-interfaces',
    '/network-interfaces/eth0/x', '/actions/x', '/machine-config/', '/machine-config/x',
    '/version/x', '/vsock/x', '/logger/x', '/metrics/x', '/serial/x', '/entropy/x',
    '/boot-source/x', '/instance', '/console', '/config', '/x',
]
NOT_SUPPORTED = 'not supported yet'
TAP_FAILED = 'Could not create the network device'
# The body of PUT/PATCH/POST/DELETE probes: a PUT or PATCH without a body
# is refused before routing ("Empty PUT request."), and this one changes
# nothing on a route that exists (unknown field).
PROBE_BODY = {'x-hvz-probe': True}
INSTANCE_ID = 'openapi_test'
DEFAULT_ID = 'anonymous-instance'  # without --id
RESTORE_ID = 'openapi_restore'
# Files the examples name (relative paths, resolved in hvz's working
# directory). The kernel is an empty file, removed before InstanceStart.
SCRATCH_FILES = {
    'vmlinux': 0,
    'rootfs.ext4': 1 << 20,
    'scratch.ext4': 1 << 20,
    'initrd.img': 4096,
    'hvz.log': 0,
    'metrics.json': 0,
    'serial.log': 0,
}


class Failure(Exception):
    pass


def can_create_tap():
    """Whether this process may create a TAP device, as hvz (its child) does
    when PUT /network-interfaces names one that does not exist."""
    tunsetiff = 0x400454ca  # _IOW('T', 202, int)
    flags = 0x0002 | 0x1000 | 0x4000  # IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
    try:
        fd = os.open('/dev/net/tun', os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        # A template name: the kernel picks a free one; it goes with the fd.
        fcntl.ioctl(fd, tunsetiff, struct.pack('16sH', b'hvzoapi%d', flags))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)
            print('FAIL: ' + what, file=sys.stderr)
        return ok


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path, timeout=10.0):
        super().__init__('localhost', timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class Response:
    def __init__(self, status, raw, content_type=None):
        self.status = status
        self.raw = raw
        self.content_type = content_type
        self.json = None
        self.json_error = None
        if raw:
            try:
                self.json = json.loads(raw)
            except ValueError as e:
                self.json_error = str(e)

    def fault(self):
        if isinstance(self.json, dict) and isinstance(self.json.get('fault_message'), str):
            return self.json['fault_message']
        return None

    def __str__(self):
        text = self.raw.decode('utf-8', 'replace')
        return '%d %s' % (self.status, text[:300])


class Api:
    def __init__(self, socket_path):
        self.socket_path = socket_path

    def request(self, method, path, body=None, raw_body=None):
        """body: a JSON value; raw_body: bytes sent as they are."""
        conn = UnixHTTPConnection(self.socket_path)
        try:
            headers = {'Accept': 'application/json'}
            data = raw_body
            if body is not None:
                data = json.dumps(body).encode()
            if data is not None:
                headers['Content-Type'] = 'application/json'
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return Response(resp.status, resp.read(), resp.getheader('Content-Type'))
        finally:
            conn.close()


class Spec:
    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.resolver = jsonschema.RefResolver(base_uri='', referrer=self.doc)

    def pointer(self, ref):
        """The object a local $ref ('#/a/b') names; Failure if it does not exist."""
        if not ref.startswith('#'):
            raise Failure('non-local $ref %r' % ref)
        node = self.doc
        for part in ref[1:].split('/')[1:]:
            part = part.replace('~1', '/').replace('~0', '~')
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise Failure('$ref %r does not resolve' % ref)
        return node

    def deref(self, obj):
        """Follows a (chain of) $ref of a Response, Parameter or Request Body Object."""
        seen = 0
        while isinstance(obj, dict) and '$ref' in obj:
            obj = self.pointer(obj['$ref'])
            seen += 1
            if seen > 16:
                raise Failure('$ref loop')
        return obj

    def validator(self, schema):
        return jsonschema.Draft202012Validator(schema, resolver=self.resolver)

    def operations(self):
        """(path template, method, operation, path-level parameters)."""
        for path, item in self.doc.get('paths', {}).items():
            for method in ['get', 'put', 'patch', 'post', 'delete', 'head', 'options', 'trace']:
                if method in item:
                    yield path, method.upper(), item[method], item.get('parameters', [])


def all_refs(node, where='#'):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == '$ref' and isinstance(value, str):
                yield where, value
            else:
                yield from all_refs(value, where + '/' + str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from all_refs(value, where + '/' + str(i))


def fill_path(template, params):
    def sub(m):
        name = m.group(1)
        if name not in params:
            raise Failure('%s: no value for path parameter %s' % (template, name))
        return str(params[name])
    return re.sub(r'\{([^}]+)\}', sub, template)


def template_regex(template):
    """A path template as the server matches it: a trailing slash ignored and
    a trailing {id} possibly empty ('/drives' is /drives/{drive_id} with an
    empty id, a 400 of that route)."""
    rx = re.sub(r'\\\{[^}]+\\\}', '[^/]*', re.escape(template))
    if rx.endswith('/[^/]*'):
        rx = rx[:-len('/[^/]*')] + '(?:/[^/]*)?'
    return re.compile('^' + rx + '/?$')


class OpenApiTest:
    def __init__(self, hvz, spec_path):
        self.hvz = os.path.abspath(hvz)
        self.spec = Spec(spec_path)
        self.c = Checks()
        self.dir = None
        self.proc = None
        self.api = None
        self.tap_ok = can_create_tap()

    # --- 1. The description itself -------------------------------------

    def check_spec(self):
        c, spec, doc = self.c, self.spec, self.spec.doc
        c.check(str(doc.get('openapi', '')).startswith('3.1.'),
                'spec: openapi must be 3.1.x (schemas are JSON Schema 2020-12)')
        for where, ref in all_refs(doc):
            try:
                spec.pointer(ref)
                c.check(True, '')
            except Failure as e:
                c.check(False, 'spec: %s: %s' % (where, e))
        for name, schema in doc.get('components', {}).get('schemas', {}).items():
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
                c.check(True, '')
            except jsonschema.SchemaError as e:
                c.check(False, 'spec: schema %s: %s' % (name, e.message))
        error_ref = '#/components/schemas/Error'
        c.check(error_ref[2:].split('/')[-1] in doc.get('components', {}).get('schemas', {}),
                'spec: no Error schema')
        op_ids = set()
        for path, method, op, path_params in spec.operations():
            name = '%s %s' % (method, path)
            c.check(method in METHODS, '%s: method not in %s' % (name, METHODS))
            op_id = op.get('operationId')
            c.check(op_id and op_id not in op_ids, '%s: missing or duplicate operationId' % name)
            op_ids.add(op_id)
            params = [spec.deref(p) for p in path_params + op.get('parameters', [])]
            declared = {p['name'] for p in params if p.get('in') == 'path'}
            used = set(re.findall(r'\{([^}]+)\}', path))
            c.check(declared == used, '%s: path parameters %s declared, %s in the path'
                    % (name, sorted(declared), sorted(used)))
            for p in params:
                if 'schema' in p:
                    self.check_subschema(p['schema'], '%s parameter %s' % (name, p['name']))
            responses = op.get('responses', {})
            c.check(bool(responses), '%s: no responses' % name)
            for status, resp in responses.items():
                c.check(re.fullmatch(r'[1-5][0-9][0-9]', str(status)) is not None,
                        '%s: response key %r is not a status code' % (name, status))
                schema = self.response_schema(op, status)
                if schema is not None:
                    self.check_subschema(schema, '%s response %s' % (name, status))
            bad = spec.deref(responses.get('400', responses.get(400, {})))
            schema = bad.get('content', {}).get('application/json', {}).get('schema')
            c.check(schema is not None and spec.deref(schema) is spec.pointer(error_ref),
                    '%s: no 400 response with the Error schema' % name)
            body = self.request_body(op)
            if body is not None:
                schema = body.get('schema')
                c.check(schema is not None, '%s: request body without a schema' % name)
                if schema is not None:
                    self.check_subschema(schema, '%s request body' % name)

    def check_subschema(self, schema, what):
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
            self.c.check(True, '')
        except jsonschema.SchemaError as e:
            self.c.check(False, '%s: bad schema: %s' % (what, e.message))

    def request_body(self, op):
        """The operation's application/json media type object, or None."""
        if 'requestBody' not in op:
            return None
        rb = self.spec.deref(op['requestBody'])
        content = rb.get('content', {})
        if 'application/json' not in content:
            raise Failure('request body is not application/json')
        return content['application/json']

    def response_schema(self, op, status):
        resp = self.spec.deref(op.get('responses', {}).get(str(status)))
        if resp is None:
            return None
        return resp.get('content', {}).get('application/json', {}).get('schema')

    def documented(self, op, status):
        return str(status) in {str(k) for k in op.get('responses', {})}

    # --- the server --------------------------------------------------------

    def start_server(self, instance_id):
        """A fresh hvz --api-sock [--id ID] in a fresh scratch directory."""
        self.dir = tempfile.mkdtemp(prefix='hvz-openapi-')
        if len(self.dir) > 80:  # sun_path is 108 bytes
            shutil.rmtree(self.dir)
            self.dir = tempfile.mkdtemp(prefix='hvz-openapi-', dir='/tmp')
        for name, size in SCRATCH_FILES.items():
            with open(os.path.join(self.dir, name), 'wb') as f:
                f.truncate(size)
        sock = os.path.join(self.dir, 'api.sock')
        self.stdout = open(os.path.join(self.dir, 'hvz.stdout'), 'wb')
        self.stderr = open(os.path.join(self.dir, 'hvz.stderr'), 'wb')
        args = [self.hvz, '--api-sock', sock]
        if instance_id != DEFAULT_ID:
            args += ['--id', instance_id]
        self.instance_id = instance_id
        self.proc = None
        try:
            self.proc = subprocess.Popen(args, cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=self.stdout, stderr=self.stderr)
        except OSError as e:
            self.abort('cannot run %s: %s' % (self.hvz, e))
        self.api = Api(sock)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.abort('hvz --api-sock exited with status %d before serving'
                           % self.proc.returncode)
            if os.path.exists(sock):
                try:
                    self.api.request('GET', '/')
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        self.abort('hvz --api-sock did not answer on its socket within 20 s')

    def abort(self, message):
        self.c.check(False, message)
        self.stop_server()
        raise Failure(None)

    def server_output(self):
        out = []
        for name in ['hvz.stdout', 'hvz.stderr']:
            try:
                with open(os.path.join(self.dir, name), 'rb') as f:
                    text = f.read().decode('utf-8', 'replace').strip()
                if text:
                    out.append('%s:\n%s' % (name, text[-2000:]))
            except OSError:
                pass
        return '\n'.join(out)

    def stop_server(self):
        """Stops hvz; keeps the scratch directory when a check failed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        for f in [self.stdout, self.stderr]:
            f.close()
        if self.c.failed:
            output = self.server_output()
            if output:
                print(output, file=sys.stderr)
        self.cleanup()

    def cleanup(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # --- 2./3. Examples ----------------------------------------------------

    def path_defaults(self, op, path_params):
        """Path parameter values from the parameters' `example`."""
        defaults = {}
        for p in path_params + op.get('parameters', []):
            p = self.spec.deref(p)
            if p.get('in') == 'path' and 'example' in p:
                defaults[p['name']] = p['example']
        return defaults

    def examples(self, path, method, op, path_params):
        """[(name, path params, body or None, expected status or None,
        expected fault_message part or None)]."""
        defaults = self.path_defaults(op, path_params)
        out = []
        for i, ex in enumerate(op.get('x-hvz-examples', [])):
            params = dict(defaults, **ex.get('path-params', {}))
            out.append((ex.get('summary', 'x-hvz-examples[%d]' % i), params, ex.get('body'),
                        ex.get('status'), ex.get('fault')))
        body = self.request_body(op)
        if body is not None:
            if 'example' in body:
                out.append(('example', defaults, body['example'], None, None))
            for key, ex in body.get('examples', {}).items():
                ex = self.spec.deref(ex)
                params = dict(defaults, **ex.get('x-hvz-path-params', {}))
                status, fault = ex.get('x-hvz-status'), ex.get('x-hvz-fault')
                if ex.get('x-hvz-needs-tap') and not self.tap_ok:
                    status, fault = 400, TAP_FAILED
                out.append((key, params, ex.get('value'), status, fault))
        return out

    def check_response(self, name, op, resp, expected=None, expected_fault=None):
        c = self.c
        ok = c.check(self.documented(op, resp.status),
                     '%s: undocumented status: %s' % (name, resp))
        if expected is not None:
            ok &= c.check(resp.status == expected,
                          '%s: expected %s, got %s' % (name, expected, resp))
        fault = resp.fault()
        if expected_fault is not None:
            ok &= c.check(fault is not None and expected_fault in fault,
                          '%s: expected a fault_message with %r, got %s'
                          % (name, expected_fault, resp))
        ok &= c.check(fault is None or not fault.startswith(INVALID_ROUTE),
                      '%s: a documented operation is not served: %s' % (name, resp))
        schema = self.response_schema(op, resp.status)
        if schema is None:
            ok &= c.check(not resp.raw, '%s: undocumented response body: %s' % (name, resp))
        elif c.check(resp.json_error is None and resp.raw,
                     '%s: response is not JSON: %s' % (name, resp)):
            ok &= c.check((resp.content_type or '').split(';')[0].strip() == 'application/json',
                          '%s: Content-Type %r, not application/json'
                          % (name, resp.content_type))
            errors = sorted(self.spec.validator(schema).iter_errors(resp.json), key=str)
            ok &= c.check(not errors, '%s: response does not match its schema: %s: %s'
                          % (name, '; '.join(e.message for e in errors[:3]), resp))
        else:
            ok = False
        return ok

    def run_examples(self, ops):
        c = self.c
        for path, method, op, path_params in ops:
            examples = self.examples(path, method, op, path_params)
            c.check(examples, '%s %s: no example request' % (method, path))
            body = self.request_body(op)
            validator = self.spec.validator(body['schema']) if body else None
            for name, params, value, expected, expected_fault in examples:
                what = '%s %s example %r' % (method, path, name)
                if expected is not None:
                    c.check(self.documented(op, expected),
                            '%s: x-hvz-status %s is not documented' % (what, expected))
                if validator is not None:
                    if not c.check(value is not None, '%s: no body' % what):
                        continue
                    errors = list(validator.iter_errors(value))
                    c.check(not errors, '%s: does not match the request schema: %s'
                            % (what, '; '.join(e.message for e in errors[:3])))
                resp = self.api.request(method, fill_path(path, params), body=value)
                self.check_response(what, op, resp, expected, expected_fault)

    def expect_error(self, what, op, resp):
        c = self.c
        c.check(resp.status == 400, '%s: expected 400, got %s' % (what, resp))
        fault = resp.fault()
        c.check(fault is not None and fault.strip() != '',
                '%s: no fault_message: %s' % (what, resp))
        c.check(fault is None or not fault.startswith(INVALID_ROUTE),
                '%s: a documented operation is not served: %s' % (what, resp))
        if op is not None and resp.status == 400:
            schema = self.response_schema(op, 400)
            if schema is not None and resp.json is not None:
                c.check(self.spec.validator(schema).is_valid(resp.json),
                        '%s: 400 body does not match its schema: %s' % (what, resp))

    def run_negative(self, ops):
        c = self.c
        for path, method, op, path_params in ops:
            body = self.request_body(op)
            if body is None:
                url = fill_path(path, self.path_defaults(op, path_params))
                self.expect_error('%s %s with a body' % (method, path), op,
                                  self.api.request(method, url, body={}))
                continue
            validator = self.spec.validator(body['schema'])
            defaults = self.path_defaults(op, path_params)
            for kind, schema_ok in [('x-hvz-invalid', False), ('x-hvz-rejected', True)]:
                for i, ex in enumerate(body.get(kind, [])):
                    what = '%s %s %s %r' % (method, path, kind, ex.get('summary', i))
                    value = ex.get('value')
                    c.check(validator.is_valid(value) == schema_ok,
                            '%s: the schema %s it' % (what, 'rejects' if schema_ok else 'accepts'))
                    params = dict(defaults, **ex.get('x-hvz-path-params', {}))
                    resp = self.api.request(method, fill_path(path, params), body=value)
                    self.expect_error(what, op, resp)
            url = fill_path(path, defaults)
            self.expect_error('%s %s with malformed JSON' % (method, path), op,
                              self.api.request(method, url, raw_body=b'{"a": '))
            self.expect_error('%s %s without a body' % (method, path), op,
                              self.api.request(method, url))

    def check_body_limit(self):
        """A body over the limit is refused with a 400; one at the limit is parsed."""
        op = self.spec.doc['paths']['/boot-source']['put']
        # A valid BootSource of exactly MAX_BODY bytes (padded with JSON
        # whitespace: boot_args is limited to far less), then one byte more.
        base = json.dumps({'kernel_image_path': 'vmlinux', 'boot_args': 'console=ttyS0'})
        pad = MAX_BODY - len(base)
        at_limit = (base[:-1] + ' ' * pad + '}').encode()
        self.c.check(len(at_limit) == MAX_BODY, 'test: body at the limit has %d bytes'
                     % len(at_limit))
        resp = self.api.request('PUT', '/boot-source', raw_body=at_limit)
        self.check_response('PUT /boot-source with a %d-byte body' % MAX_BODY, op, resp, 204)
        over = (base[:-1] + ' ' * (pad + 1) + '}').encode()
        try:
            resp = self.api.request('PUT', '/boot-source', raw_body=over)
        except (OSError, http.client.HTTPException) as e:
            self.c.check(False, 'PUT /boot-source with a %d-byte body: no answer (%s)'
                         % (len(over), e))
            return
        self.expect_error('PUT /boot-source with a %d-byte body' % len(over), op, resp)
        # Restore the example's boot source.
        resp = self.api.request('PUT', '/boot-source', body={'kernel_image_path': 'vmlinux'})
        self.check_response('PUT /boot-source', op, resp, 204)

    # --- 4. Route coverage -------------------------------------------------

    def not_supported_prefixes(self):
        for entry in self.spec.doc.get('x-hvz-not-supported', []):
            yield entry['prefix'].rstrip('/'), entry['methods']

    def not_supported(self, url, method, resp):
        """A 400 "not supported yet" below an x-hvz-not-supported prefix."""
        fault = resp.fault() or ''
        for prefix, methods in self.not_supported_prefixes():
            if (url == prefix or url.startswith(prefix + '/')) and method in methods:
                return resp.status == 400 and NOT_SUPPORTED in fault
        return False

    def check_not_supported(self):
        """Every x-hvz-not-supported prefix and method, and only those,
        answer "not supported yet" below the prefix."""
        for prefix, methods in self.not_supported_prefixes():
            url = prefix + '/x-hvz-probe'
            for method in METHODS:
                resp = self.api.request(method, url,
                                        body=None if method == 'GET' else PROBE_BODY)
                fault = resp.fault() or ''
                if method in methods:
                    self.c.check(resp.status == 400 and NOT_SUPPORTED in fault,
                                 '%s %s: expected a 400 %r: %s'
                                 % (method, url, NOT_SUPPORTED, resp))
                else:
                    self.c.check(resp.status == 400 and fault.startswith(INVALID_ROUTE),
                                 '%s %s: expected a 400 %r: %s'
                                 % (method, url, INVALID_ROUTE, resp))

    def check_routes(self, ops):
        c = self.c
        documented = {}  # (template, method)
        probes = []  # (url, template or None)
        for path, method, op, path_params in ops:
            documented[(path, method)] = op
        for path in self.spec.doc.get('paths', {}):
            op = next(o for (p, _), o in documented.items() if p == path)
            item = self.spec.doc['paths'][path]
            params = self.path_defaults(op, item.get('parameters', []))
            probes.append((fill_path(path, params), path))
        templates = [(t, template_regex(t)) for t in self.spec.doc.get('paths', {})]
        for url in CANDIDATE_PATHS:
            match = [t for t, rx in templates if rx.match(url)]
            probes.append((url, match[0] if match else None))
        for url, template in probes:
            for method in METHODS:
                try:
                    resp = self.api.request(method, url,
                                            body=None if method == 'GET' else PROBE_BODY)
                except (OSError, http.client.HTTPException) as e:
                    c.check(False, '%s %s: no answer (%s)' % (method, url, e))
                    continue
                fault = resp.fault()
                served = not (resp.status == 400 and fault and fault.startswith(INVALID_ROUTE))
                key = (template, method)
                if served:
                    c.check(key in documented or self.not_supported(url, method, resp),
                            '%s %s is served (%s) but not documented' % (method, url, resp))
                    c.check(resp.status != 400 or fault is not None,
                            '%s %s: 400 without a fault_message: %s' % (method, url, resp))
                else:
                    c.check(key not in documented,
                            '%s %s is documented but not served: %s' % (method, url, resp))

    # --- 5. The configuration as a whole ------------------------------------

    def check_vm_config(self):
        c = self.c
        op = self.spec.doc['paths']['/vm/config']['get']
        resp = self.api.request('GET', '/vm/config')
        if not self.check_response('GET /vm/config after the PUTs', op, resp, 200):
            return
        cfg = resp.json
        drives = {d.get('drive_id'): d for d in cfg.get('drives', [])}
        c.check(set(drives) == {'rootfs', 'scratch'},
                'GET /vm/config: drives %s, expected rootfs and scratch' % sorted(drives))
        if 'scratch' in drives:
            d = drives['scratch']
            c.check(d.get('path_on_host') == 'scratch.ext4' and d.get('is_read_only') is True,
                    'GET /vm/config: scratch drive is %s' % d)
        nets = {n.get('iface_id'): n for n in cfg.get('network-interfaces', [])}
        expected_nets = {'eth0', 'eth1'} if self.tap_ok else set()
        c.check(set(nets) == expected_nets,
                'GET /vm/config: interfaces %s, expected %s' % (sorted(nets), sorted(expected_nets)))
        if 'eth0' in nets:
            c.check((nets['eth0'].get('guest_mac') or '').lower() == '06:00:ac:10:00:02',
                    'GET /vm/config: eth0 is %s' % nets['eth0'])
        mc = cfg.get('machine-config', {})
        c.check(mc.get('vcpu_count') == 2 and mc.get('mem_size_mib') == 512,
                'GET /vm/config: machine-config %s, expected 2 vCPUs and 512 MiB' % mc)
        bs = cfg.get('boot-source', {})
        c.check(bs.get('kernel_image_path') == 'vmlinux',
                'GET /vm/config: boot-source %s' % bs)
        c.check(cfg.get('logger', {}).get('log_path') == 'hvz.log',
                'GET /vm/config: logger %s' % cfg.get('logger'))
        c.check(cfg.get('metrics', {}).get('metrics_path') == 'metrics.json',
                'GET /vm/config: metrics %s' % cfg.get('metrics'))
        resp = self.api.request('GET', '/machine-config')
        op = self.spec.doc['paths']['/machine-config']['get']
        if self.check_response('GET /machine-config after the PUTs', op, resp, 200):
            c.check(resp.json.get('vcpu_count') == 2 and resp.json.get('mem_size_mib') == 512,
                    'GET /machine-config: %s, expected 2 vCPUs and 512 MiB' % resp.json)

    def check_state(self, expected):
        op = self.spec.doc['paths']['/']['get']
        resp = self.api.request('GET', '/')
        if self.check_response('GET /', op, resp, 200):
            self.c.check(resp.json.get('state') == expected,
                         'GET /: state %r, expected %r' % (resp.json.get('state'), expected))
            self.c.check(resp.json.get('id') == self.instance_id,
                         'GET /: id %r, expected %r' % (resp.json.get('id'), self.instance_id))

    # --- 6. Loading a snapshot on a fresh process --------------------------------

    def check_failed_load(self):
        c, paths = self.c, self.spec.doc['paths']
        load_op = paths['/snapshot/load']['put']
        resp = self.api.request('PUT', '/logger', body={'log_path': 'hvz.log'})
        self.check_response('PUT /logger before a load', paths['/logger']['put'], resp, 204)
        body = {'snapshot_path': 'missing.snap',
                'mem_backend': {'backend_type': 'File', 'backend_path': 'missing.mem'}}
        errors = list(self.spec.validator(self.request_body(load_op)['schema']).iter_errors(body))
        c.check(not errors, 'PUT /snapshot/load test body does not match the schema: %s'
                % '; '.join(e.message for e in errors[:3]))
        resp = self.api.request('PUT', '/snapshot/load', body=body)
        self.check_response('PUT /snapshot/load of a missing snapshot', load_op, resp, 400,
                            'Load snapshot error: ')
        self.check_state('Not started')
        resp = self.api.request('PUT', '/boot-source', body={'kernel_image_path': 'vmlinux'})
        self.check_response('PUT /boot-source after a failed load', paths['/boot-source']['put'],
                            resp, 204)
        resp = self.api.request('PUT', '/snapshot/load', body=body)
        self.check_response('PUT /snapshot/load after PUT /boot-source', load_op, resp, 400,
                            'Loading a microVM snapshot not allowed after configuring '
                            'boot-specific resources.')
        self.check_state('Not started')

    # --- main ------------------------------------------------------------------

    def phase(self, steps, instance_id):
        """Runs `steps` against a fresh hvz --api-sock."""
        self.start_server(instance_id)
        try:
            steps()
            self.c.check(self.proc.poll() is None,
                         'hvz exited (status %s)' % self.proc.returncode)
        except (OSError, http.client.HTTPException) as e:
            self.c.check(False, 'talking to hvz: %r' % e)
        except Failure as e:
            self.c.check(False, str(e))
        finally:
            self.stop_server()

    def run(self):
        self.check_spec()
        ops = list(self.spec.operations())
        # The actions run on a second hvz (without --id) with nothing but a
        # boot source, so that a failing InstanceStart opens no drive or TAP
        # device.
        config_ops = [o for o in ops if o[0] != '/actions']
        action_ops = [o for o in ops if o[0] == '/actions']

        def configure():
            self.check_state('Not started')
            self.run_examples(config_ops)
            self.check_vm_config()
            self.run_negative(ops)
            self.check_body_limit()
            self.check_routes(ops)
            self.check_not_supported()
            self.check_vm_config()  # nothing since changed it

        def act():
            op = self.spec.doc['paths']['/boot-source']['put']
            resp = self.api.request('PUT', '/boot-source', body={'kernel_image_path': 'vmlinux'})
            self.check_response('PUT /boot-source', op, resp, 204)
            os.unlink(os.path.join(self.dir, 'vmlinux'))
            self.run_examples(action_ops)
            self.check_state('Not started')

        self.phase(configure, INSTANCE_ID)
        self.phase(act, DEFAULT_ID)
        self.phase(self.check_failed_load, RESTORE_ID)


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    test = OpenApiTest(sys.argv[1], sys.argv[2])
    try:
        test.run()
    except Failure as e:
        if e.args[0] is not None:
            test.c.check(False, str(e))
    if test.c.failed:
        print('openapi: %d checks passed, %d failed' % (test.c.passed, len(test.c.failed)))
        return 1
    print('openapi: %d checks passed' % test.c.passed)
    return 0


if __name__ == '__main__':
    sys.exit(main())
