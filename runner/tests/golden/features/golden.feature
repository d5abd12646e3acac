Feature: a tiny run over the in-memory mesh, for the runner's golden files
  One scenario passes, one fails (a readiness fault, which nothing in the in-memory mesh reacts
  to) and one is not applicable (it states the other profile).

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-RR-2
  Scenario: 12 requests over 3 replicas give each replica 4
    When the client sends 12 requests to "http://in-ambient:8000/hostname"
    Then each of the 3 "in-ambient" replicas answered 4 requests

  @L4-FO-2
  Scenario: the pod taken down answers no request
    When I take down the first "in-ambient" pod by failing its readiness probe
    And the client sends 6 requests to "http://in-ambient:8000/hostname"
    Then the pod taken down answered no request

  @L4-RR-3 @profile-istio
  Scenario: a behaviour of the other profile
    When the client sends 1 request to "http://in-ambient:8000/hostname"
    Then every request is answered
