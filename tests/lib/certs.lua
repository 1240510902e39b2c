-- certs.lua: test certificates made with the openssl command, into a folder of the test's:
--   local certs = require 'certs'
--   local c = certs.make(dir)   -- c.ca, c.server, c.key, c.expired, c.wronghost, ...
-- A CA; a server certificate and key for localhost and 127.0.0.1 signed by it; one that
-- expired; one for another host; and a second CA that signed nothing of these.
local certs = {}

local function sh(cmd)
	local p = io.popen('(' .. cmd .. ') 2>&1; echo "#status $?"')
	local out = p:read('*a')
	p:close()
	local status = tonumber(out:match('#status (%d+)\n?$'))
	if status ~= 0 then error('openssl failed: ' .. cmd .. '\n' .. out, 2) end
end

local EC = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'

-- A key and a certificate for cn (its names: alt, an openssl subjectAltName list), signed
-- by the CA of dir, valid for days (negative: expired).
local function signed(dir, name, cn, alt, days, ca)
	ca = ca or 'ca'
	local f = dir .. '/' .. name
	local ext = f .. '.ext'
	local e = assert(io.open(ext, 'w'))
	e:write('subjectAltName=', alt, '\nbasicConstraints=CA:FALSE\n')
	e:close()
	sh(('openssl req %s -keyout %s.key -out %s.csr -subj "/CN=%s"'):format(EC, f, f, cn))
	sh(('openssl x509 -req -in %s.csr -CA %s/%s.pem -CAkey %s/%s.key -CAcreateserial '
		.. '-out %s.pem -days %d -extfile %s'):format(f, dir, ca, dir, ca, f, days, ext))
	return f .. '.pem', f .. '.key'
end

function certs.make(dir)
	local c = {}
	for _, ca in ipairs { 'ca', 'otherca' } do
		sh(('openssl req -x509 %s -keyout %s/%s.key -out %s/%s.pem -days 2 -subj "/CN=lem test %s"')
			:format(EC, dir, ca, dir, ca, ca))
	end
	c.ca, c.otherca = dir .. '/ca.pem', dir .. '/otherca.pem'
	c.server, c.key = signed(dir, 'server', 'localhost', 'DNS:localhost,IP:127.0.0.1', 2)
	c.expired, c.expired_key = signed(dir, 'expired', 'localhost', 'DNS:localhost,IP:127.0.0.1', -1)
	c.wronghost, c.wronghost_key = signed(dir, 'wronghost', 'example.org', 'DNS:example.org', 2)
	c.client, c.client_key = signed(dir, 'client', 'lem test client', 'DNS:client', 2)
	c.strange, c.strange_key = signed(dir, 'strange', 'localhost', 'DNS:localhost,IP:127.0.0.1', 2,
		'otherca')
	return c
end

-- A test's folder with its certificates: dir, paths | nil (a failed test says why).
function certs.for_test(t)
	local dir = t.tmpdir()
	local ok, c = pcall(certs.make, dir)
	if not t.ok(ok, 'the openssl command makes the test certificates', tostring(c)) then return nil end
	return dir, c
end

return certs
