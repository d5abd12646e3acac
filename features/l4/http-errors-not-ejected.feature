Feature: ztunnel's outlier detection is L4 only: HTTP errors do not eject a backend
  Seed 001: "This outlier detection is still L4 only; the ztunnel does not use HTTP status codes."
  A backend that answered HTTP 500 to its share of a first batch of 20 requests is still picked in
  the next 32: a mesh that kept it as one of three even picks leaves it out with probability
  (2/3)^32 = 2.3e-6 (the declared false-alarm rate, 0.00001 as bundled); an ejected one never answers.

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-OD-1 @needs-app-faults
  Scenario: a pod answering HTTP 500 to every request keeps being picked
    When the first "in-ambient" pod answers every request with HTTP 500
    And the client sends 20 requests to "http://in-ambient:8000/hostname"
    And the client sends 32 requests to "http://in-ambient:8000/hostname"
    Then the first "in-ambient" pod was still picked in the latest batch, as one of its 3 replicas, with the declared false-alarm rate
    And every answer of the first "in-ambient" pod was HTTP 500
