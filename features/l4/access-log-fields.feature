Feature: every completed connection is logged with every field of the guide's access line
  Seed 000 step 2: `info access connection complete src.addr=… src.workload=… src.namespace=…
  src.identity=spiffe://cluster.local/ns/<ns>/sa/<sa> dst.addr=<pod ip>:8080 dst.service=…
  dst.workload=… dst.namespace=… direction="outbound" bytes_sent=… bytes_recv=… duration="…ms"`.
  Fields are parsed, never matched as substrings. Over HBONE upstream ztunnel writes the
  destination ztunnel's tunnel address (`<pod ip>:15008`) as dst.addr and the pod's own address
  as `dst.hbone_addr`; the pod's address is that field when a line has it, else dst.addr.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @LOG-1 @needs-ztunnel-logs
  Scenario: the access line of each connection carries source, destination, direction, bytes and duration
    When the client sends 6 requests to "http://in-ambient:8000/hostname"
    Then every request is answered
    And ztunnel logs a "connection complete" access line for each request
    And every access line names the client pod, namespace "httpbin" and identity "spiffe://cluster.local/ns/httpbin/sa/client-in-ambient"
    And every access line names service "in-ambient.httpbin.svc.cluster.local", namespace "httpbin" and direction "outbound"
    And every access line's pod address is a "in-ambient" pod's IP on port 8080 and its dst.workload is that pod
    And every access line counts bytes sent and received and a duration in milliseconds
