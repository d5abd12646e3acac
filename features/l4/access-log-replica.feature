Feature: the access line names the replica that answered
  Seed 000 step 2: the dst.workload of each access line is the pod whose /hostname answered.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @LOG-2 @needs-ztunnel-logs
  Scenario: 9 requests, 9 access lines, each naming the replica that answered its request
    When the client sends 9 requests to "http://in-ambient:8000/hostname"
    Then every request is answered
    And ztunnel logs a "connection complete" access line for each request
    And each request's access line names the replica that answered it
